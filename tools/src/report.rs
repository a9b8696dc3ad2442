//! Output of the load generator: a human table per run, and with `--json`
//! one JSON line per run (for scripts and BENCHMARKS.md).

use serde::Serialize;

/// Prints `rows` as a two-column table under `title`.
pub fn print_table(title: &str, rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("{title}");
    for (key, value) in rows {
        println!("  {key:<width$}  {value}");
    }
}

/// Prints `report` as one JSON line.
pub fn print_json(report: &impl Serialize) {
    match serde_json::to_string(report) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("cannot render the report as JSON: {e}"),
    }
}

/// Bytes as KiB with one decimal.
pub fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// An optional figure, or "-" when it was not measured.
pub fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}
