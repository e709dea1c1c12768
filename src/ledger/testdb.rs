//! Tests only: a private MariaDB server for the ledger's tests, started once per test process
//! (`mariadb-install-db` into a folder of its own, `mariadbd` on a free port of 127.0.0.1), and a fresh
//! database in it for each test — so every test of the ledger runs on both backends.
//!
//! Must never: touch a server it did not start, or leave its server running after the process ends (the
//! server gets SIGKILL when the thread that started it, which lives as long as the process, is gone).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use super::maria::MariaTarget;

/// The server's port, or why there is none.
static SERVER: OnceLock<Result<u16, String>> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether CI asks for every part (then a missing server fails the test instead of skipping it).
fn required() -> bool {
    std::env::var("DIRWATCHER_REQUIRE_SLURM").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

fn find(names: &[&str]) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .flat_map(|d| names.iter().map(move |n| Path::new(d).join(n)))
        .find(|p| p.is_file())
}

fn root_opts(port: u16) -> mysql::Opts {
    mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .into()
}

fn start() -> Result<u16, String> {
    let (Some(server), Some(install)) = (
        find(&["mariadbd", "mysqld"]),
        find(&["mariadb-install-db", "mysql_install_db"]),
    ) else {
        return Err("no mariadbd (apt-get install mariadb-server)".into());
    };
    let dir = std::env::temp_dir().join(format!("dw-ledger-mariadb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Its own temporary folder: servers started at once must not share /tmp's `#sql-temptable-*`.
    std::fs::create_dir_all(dir.join("tmp")).map_err(|e| e.to_string())?;
    let out = Command::new(install)
        .arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--tmpdir={}", dir.join("tmp").display()))
        .args([
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let (tx, rx) = std::sync::mpsc::channel();
    // The server's parent thread: it lives as long as the process, and the server dies with it.
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(server);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--innodb-flush-log-at-trx-commit=2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn();
        let _ = tx.send(child.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        if let Ok(mut c) = child {
            let _ = c.wait();
        }
        // The server's data go with it.
        let _ = std::fs::remove_dir_all(&dir);
        loop {
            std::thread::park();
        }
    });
    rx.recv().map_err(|e| e.to_string())??;
    let deadline = Instant::now() + Duration::from_secs(60);
    while mysql::Conn::new(root_opts(port)).is_err() {
        if Instant::now() > deadline {
            return Err("the test MariaDB did not answer within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(port)
}

/// A new, empty database on the test server, or `None` when there is no server (the caller skips;
/// in CI it panics).
pub fn fresh(test: &str) -> Option<MariaTarget> {
    match SERVER.get_or_init(start) {
        Ok(port) => {
            let name = format!(
                "t{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            );
            let mut c = mysql::Conn::new(root_opts(*port)).expect("the test MariaDB answers");
            c.query_drop(format!("CREATE DATABASE {name}")).unwrap();
            Some(MariaTarget {
                user: "root".into(),
                host: "127.0.0.1".into(),
                port: *port,
                database: name,
                password: None,
                tls: false,
            })
        }
        Err(e) if required() => panic!("{test}: MariaDB is required here: {e}"),
        Err(e) => {
            eprintln!("SKIPPED the MariaDB half of {test}: {e}");
            None
        }
    }
}
