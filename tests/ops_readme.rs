//! The README's settings and metrics tables are generated: the settings
//! from the same clap definition `chatgate --help` prints, the metrics from
//! the process's own registry. This test fails when a table is out of
//! date; `CHATGATE_UPDATE_README=1 cargo test --test ops_readme` renews
//! both.

use chatgate::config::Config;
use chatgate::metrics::Metrics;
use clap::{CommandFactory, Parser};

#[derive(Parser)]
#[command(name = "chatgate")]
struct Cli {
    #[command(flatten)]
    config: Config,
}

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");

/// One row per setting: variable, flag, default, what it does.
fn settings_table() -> String {
    let mut out = String::from("| variable | flag | default | what |\n|---|---|---|---|\n");
    for arg in Cli::command().get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            "unset".to_owned()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let mut help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
            .replace('\n', " ");
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        if !values.is_empty() {
            help.push_str(&format!(" One of {}.", values.join(", ")));
        }
        out.push_str(&format!(
            "| `{}` | `--{long}` | {default} | {} |\n",
            env.to_string_lossy(),
            help.replace('|', "\\|")
        ));
    }
    out
}

/// One row per metric: name, type, help, from a fresh registry.
fn metrics_table() -> String {
    let text = Metrics::new().render(&[]);
    let mut out = String::from("| metric | type | what |\n|---|---|---|\n");
    let mut help = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, what) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name.to_owned(), what.to_owned()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let (help_name, what) = help.take().unwrap_or_default();
            assert_eq!(help_name, name, "HELP and TYPE disagree");
            let series = match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_owned(),
            };
            out.push_str(&format!("| `{series}` | {kind} | {what} |\n"));
        }
    }
    out
}

/// Replaces the block between `<!-- NAME:begin -->` and `<!-- NAME:end -->`.
fn with_block(readme: &str, name: &str, table: &str) -> String {
    let begin = format!("<!-- {name}:begin -->\n");
    let end = format!("<!-- {name}:end -->");
    let start = readme
        .find(&begin)
        .unwrap_or_else(|| panic!("README has no {begin:?}"))
        + begin.len();
    let stop = readme[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("README has no {end:?}"))
        + start;
    format!("{}{table}{}", &readme[..start], &readme[stop..])
}

#[test]
fn the_readme_tables_are_up_to_date() {
    let readme = std::fs::read_to_string(README).unwrap();
    let fresh = with_block(&readme, "settings", &settings_table());
    let fresh = with_block(&fresh, "metrics", &metrics_table());
    if std::env::var_os("CHATGATE_UPDATE_README").is_some_and(|v| !v.is_empty()) {
        std::fs::write(README, &fresh).unwrap();
        return;
    }
    assert!(
        fresh == readme,
        "README.md's settings or metrics table is out of date: run \
         CHATGATE_UPDATE_README=1 cargo test --test ops_readme"
    );
}

#[test]
fn every_setting_has_a_variable_and_a_default_or_says_unset() {
    let table = settings_table();
    assert!(
        table.contains("| `CHATGATE_LISTEN` | `--listen` | `127.0.0.1:8080` |"),
        "{table}"
    );
    assert!(
        table.contains("| `CHATGATE_JWT_SECRET` | `--jwt-secret` | unset |"),
        "{table}"
    );
    for arg in Cli::command().get_arguments() {
        if arg.get_long().is_some_and(|l| l != "help") {
            assert!(
                arg.get_env().is_some(),
                "--{:?} has no environment variable",
                arg.get_long()
            );
        }
    }
}
