//! The container image as production runs it: built from the Dockerfile by
//! `scripts/container-test` (which runs these tests, with the image's name
//! in `CHATGATE_TEST_IMAGE`), started with podman read-only as its non-root
//! user, and checked from outside through the published port: the
//! `HEALTHCHECK`, `/healthz`, a WebSocket session with each audience's
//! view, no write outside its tmpfs, logs without colour codes, and a
//! SIGTERM that closes clients with 1001 and exits 0 in the grace period.
//!
//! Ignored by a plain `cargo test` (they need podman and the image);
//! `scripts/container-test` runs them with `--ignored`.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chatgate::auth::Role;
use serde_json::Value;
use support::*;

/// The seed's customer and agent (proto-samples/).
const CUSTOMER: &str = "007356263E140144";
const TESTNAME: &str = "5e101708f14442c7ab79814bb4f799b2";

/// The grace period the container is given (`CHATGATE_SHUTDOWN_SECS`).
const GRACE_SECS: u64 = 5;

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs")
}

/// Runs podman and returns its trimmed stdout, failing on a non-zero exit.
fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn image() -> String {
    std::env::var("CHATGATE_TEST_IMAGE")
        .expect("CHATGATE_TEST_IMAGE names the image (scripts/container-test sets it)")
}

/// A running container, removed when dropped.
struct Container {
    name: String,
}

impl Container {
    /// Starts the image as production should: read-only root file system,
    /// a tmpfs for /tmp only, no capabilities, no privilege escalation, the
    /// port published on loopback only (a free port the kernel picks).
    fn run(image: &str, envs: &[(&str, &str)]) -> Self {
        let name = format!("chatgate-test-{}", std::process::id());
        let _ = podman(&["rm", "-f", &name]);
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &name,
            "--read-only",
            // docker's --read-only: no tmpfs but the one given (podman's
            // default adds /run, /tmp and /var/tmp).
            "--read-only-tmpfs=false",
            "--tmpfs",
            "/tmp:rw,size=16m",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "-p",
            "127.0.0.1::8080",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (k, v) in envs {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push(image.into());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        podman_ok(&argv);
        Self { name }
    }

    /// The host address its port 8080 is published on.
    fn addr(&self) -> std::net::SocketAddr {
        let port = podman_ok(&["port", &self.name, "8080/tcp"]);
        port.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("podman port: {port:?}"))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    fn exec(&self, argv: &[&str]) -> Output {
        let mut args = vec!["exec", &self.name];
        args.extend_from_slice(argv);
        podman(&args)
    }

    fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
    }

    fn health(&self) -> String {
        self.inspect("{{.State.Health.Status}}")
    }

    /// Runs the image's HEALTHCHECK until the container is healthy (podman
    /// schedules health checks with systemd timers, which a container host
    /// without systemd lacks: each run here is one the timer would make).
    fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let _ = podman(&["healthcheck", "run", &self.name]);
            if self.health() == "healthy" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not healthy within {within:?}: {}; logs:\n{}",
                self.health(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn logs(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}

#[test]
#[ignore = "needs podman and the image: scripts/container-test"]
fn the_image_is_configured_to_run_as_its_user_behind_its_health_check() {
    let image = image();
    let user = podman_ok(&["image", "inspect", "--format", "{{.Config.User}}", &image]);
    assert_eq!(user, "10001:10001");
    let check = podman_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Healthcheck}}",
        &image,
    ]);
    let check: Value = serde_json::from_str(&check).unwrap();
    assert_eq!(
        check["Test"],
        serde_json::json!(["CMD", "/usr/local/bin/chatgate", "health"]),
        "the HEALTHCHECK is kept (docker format): {check}"
    );
    let size: u64 = podman_ok(&["image", "inspect", "--format", "{{.Size}}", &image])
        .parse()
        .unwrap();
    println!("image {image}: {:.1} MB", size as f64 / 1e6);
}

#[tokio::test]
#[ignore = "needs podman and the image: scripts/container-test"]
async fn the_container_serves_read_only_as_non_root_and_stops_cleanly() {
    let grace = GRACE_SECS.to_string();
    let c = Container::run(
        &image(),
        &[
            ("CHATGATE_JWT_SECRET", SECRET),
            ("CHATGATE_SHUTDOWN_SECS", &grace),
        ],
    );
    c.wait_healthy(Duration::from_secs(30));

    // /healthz through the published port.
    let resp = reqwest::get(c.url("/healthz")).await.unwrap();
    assert_eq!(resp.status(), 200);

    // A WebSocket session through the published port: each audience its
    // own view.
    let addr = c.addr();
    let pu = sample("consult-participants-updated.json");
    let sid = pu["facebooksession"]["id"].as_str().unwrap().to_owned();
    let parts = pu["facebooksession"]["participants"].as_array().unwrap();
    let agent_p = parts[2].clone();
    let ingest = |items: Vec<Value>| {
        let url = c.url("/upstream/events");
        async move {
            let (status, reply) = post(
                &url,
                &token(Role::Service, "upstream", None),
                &Value::Array(items).to_string(),
                "application/json",
            )
            .await;
            assert_eq!(status, 202, "{reply}");
        }
    };
    ingest(vec![pu.clone()]).await;
    let mut agent = Client::connect(addr, &token(Role::Agent, TESTNAME, None), None)
        .await
        .unwrap();
    let mut customer = Client::connect(addr, &token(Role::Customer, CUSTOMER, Some(&sid)), None)
        .await
        .unwrap();
    assert_eq!(agent.welcome["role"], "agent");
    agent.next_notification().await;
    customer.next_notification().await;
    ingest(vec![
        message_from(&sid, 1, &agent_p, "Agents", "internal: refund is fine"),
        message_from(&sid, 2, &agent_p, "All", "let me check"),
    ])
    .await;
    let seen = agent.notifications(2).await;
    assert!(seen[0].to_string().contains("internal: refund is fine"));
    let to_customer = customer.next_notification().await;
    assert!(
        to_customer.to_string().contains("let me check"),
        "{to_customer}"
    );
    assert!(!to_customer.to_string().contains("internal"));

    // Its user, and no write outside its tmpfs.
    let id = c.exec(&["id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), "10001");
    for path in [
        "/chatgate-was-here",
        "/usr/local/bin/x",
        "/var/tmp/x",
        "/home/x",
    ] {
        let out = c.exec(&["touch", path]);
        assert!(!out.status.success(), "{path} is writable");
    }
    assert!(c.exec(&["touch", "/tmp/scratch"]).status.success());
    // `C /etc` is podman's own: it mounts /etc/hosts, /etc/hostname and
    // /etc/resolv.conf into every container.
    let changed = podman_ok(&["diff", &c.name]);
    let outside: Vec<&str> = changed
        .lines()
        .filter(|l| *l != "C /etc" && !l.get(2..).unwrap_or("").starts_with("/tmp"))
        .collect();
    assert!(outside.is_empty(), "changed outside /tmp: {outside:?}");

    // Logs for a collector: no ANSI colour codes.
    let logs = c.logs();
    assert!(logs.contains("chatgate listening"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "escape sequences in the logs");

    // SIGTERM: clients are told (1001), the process exits 0 in time.
    let started = Instant::now();
    podman_ok(&["kill", "--signal", "TERM", &c.name]);
    for client in [&mut agent, &mut customer] {
        assert_eq!(client.until_close().await.0, Closed::Code(1001));
    }
    let code = podman_ok(&["wait", &c.name]);
    let took = started.elapsed();
    assert_eq!(code, "0", "exit code; logs:\n{}", c.logs());
    assert!(
        took < Duration::from_secs(GRACE_SECS + 2),
        "stopped after {took:?}"
    );
    println!("SIGTERM to exit: {took:?}");
}

/// The compose file's cluster as `scripts/container-test` started it:
/// `CHATGATE_TEST_COMPOSE` = `<nginx>,<gateway a>,<gateway b>` (host
/// addresses of their published ports).
fn compose_addrs() -> [std::net::SocketAddr; 3] {
    let spec = std::env::var("CHATGATE_TEST_COMPOSE")
        .expect("CHATGATE_TEST_COMPOSE names the cluster (scripts/container-test sets it)");
    let addrs: Vec<std::net::SocketAddr> = spec.split(',').map(|a| a.parse().unwrap()).collect();
    addrs.try_into().expect("three addresses")
}

async fn wait_ready(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("http://{addr}/readyz")).await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{addr} not ready");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn ids(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
#[ignore = "needs podman and the compose cluster: scripts/container-test"]
async fn the_compose_cluster_carries_a_consult_across_gateways_through_nginx() {
    const AGENT2: &str = "e2c90c960d3d40c79684818983ceb314";
    let [lb, a, b] = compose_addrs();
    for addr in [lb, a, b] {
        wait_ready(addr).await;
    }
    let pu = sample("consult-participants-updated.json");
    let sid = pu["facebooksession"]["id"].as_str().unwrap().to_owned();
    let parts = pu["facebooksession"]["participants"].as_array().unwrap();
    let (customer_p, agent2_p, testname_p) = (&parts[0], &parts[1], &parts[2]);

    // The customer through nginx, the agent on gateway A, the consultant
    // on gateway B; all before anything happened in the session.
    let connect = |addr, role, sub: &str, sid: Option<&str>| {
        let t = token(role, sub, sid);
        async move { Client::connect(addr, &t, None).await.unwrap() }
    };
    let mut customer = connect(lb, Role::Customer, CUSTOMER, Some(&sid)).await;
    let mut agent = connect(a, Role::Agent, TESTNAME, None).await;
    let mut consultant = connect(b, Role::Agent, AGENT2, None).await;

    // The seed's consult, ingested through nginx (to the engine, onto NATS).
    let items = vec![
        seed_before_consult(),
        seed_message(1, customer_p, "All", "hello"),
        pu.clone(),
        sample("consult-new-messages.json"),
        seed_message(5, agent2_p, "Agents", "internal: refund is fine"),
        seed_message(6, testname_p, "All", "let me check"),
    ];
    let (status, reply) = post(
        &format!("http://{lb}/upstream/events"),
        &token(Role::Service, "upstream", None),
        &Value::Array(items).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(status, 202, "{reply}");

    let got = agent.notifications(6).await;
    assert_eq!(got[2]["data"], pu, "the agent gets it unchanged");
    let consulted = consultant.notifications(4).await;
    assert_eq!(
        consulted[2]["data"]["messages"][0]["text"],
        "internal: refund is fine"
    );
    assert_eq!(
        ids(&consulted),
        ids(&got[2..]),
        "the same ids on both gateways"
    );
    let seen = customer.notifications(3).await;
    let text = Value::Array(seen.clone()).to_string();
    for secret in ["Agent2", AGENT2, "internal", "userData", "referenceId"] {
        assert!(
            !text.contains(secret),
            "the customer was sent {secret}: {text}"
        );
    }
    assert_eq!(seen[2]["data"]["messages"][0]["text"], "let me check");
    customer.expect_silence(Duration::from_millis(500)).await;
}
