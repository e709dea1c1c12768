//! A private MariaDB server for the tests that need one (the web-app bridge, the ledger on a server):
//! `mariadb-install-db` into the test's temporary folder, `mariadbd` on a free port of 127.0.0.1 — never
//! the Slurm cluster's accounting database, so a test may stop and start it mid-run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// A private MariaDB server: `mariadb-install-db` into a temporary folder, `mariadbd` on a free port.
pub struct MariaDb {
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

/// The paths of the server's programs, or `None` (the test is skipped, or fails when CI requires it).
fn mariadb_programs(test: &str) -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str], dirs: &[&str]| {
        dirs.iter()
            .flat_map(|d| names.iter().map(move |n| Path::new(d).join(n)))
            .find(|p| p.is_file())
    };
    let server = find(&["mariadbd", "mysqld"], &["/usr/sbin", "/usr/bin"]);
    let install = find(
        &["mariadb-install-db", "mysql_install_db"],
        &["/usr/bin", "/usr/sbin"],
    );
    match (server, install) {
        (Some(s), Some(i)) => Some((s, i)),
        _ if slurm_required() => panic!(
            "{test}: MariaDB is required in CI (it comes with the Slurm test cluster: \
             `scripts/slurm-dev-cluster.sh up` installs mariadb-server)"
        ),
        _ => {
            eprintln!("SKIPPED {test}: no mariadbd (apt-get install mariadb-server)");
            None
        }
    }
}

impl MariaDb {
    pub fn start(test: &str, under: &Path) -> Option<MariaDb> {
        let (_, install) = mariadb_programs(test)?;
        let dir = under.join("mariadb");
        std::fs::create_dir_all(&dir).unwrap();
        // Its own temporary folder: servers started at once must not share /tmp's `#sql-temptable-*`.
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
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
            .unwrap();
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut db = MariaDb {
            dir,
            port,
            child: None,
        };
        db.launch();
        Some(db)
    }

    /// Starts the server on its data directory and port; returns once it answers.
    pub fn launch(&mut self) {
        let (server, _) = mariadb_programs("mariadb").unwrap();
        let d = &self.dir;
        let child = Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", d.join("sock").display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .arg(format!("--tmpdir={}", d.join("tmp").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        wait_for(DEADLINE, "MariaDB to answer", || {
            mysql::Conn::new(root_opts(port)).ok()
        });
    }

    /// Stops the server (SIGTERM, as `systemctl stop` does) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            c.wait().unwrap();
        }
    }

    pub fn root(&self) -> mysql::Conn {
        mysql::Conn::new(root_opts(self.port)).unwrap()
    }

    pub fn app(&self) -> mysql::Conn {
        mysql::Conn::new(
            mysql::OptsBuilder::from_opts(root_opts(self.port)).db_name(Some("webapp")),
        )
        .unwrap()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn root_opts(port: u16) -> mysql::Opts {
    mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(port)
        .user(Some("root"))
        .prefer_socket(false)
        .into()
}

impl MariaDb {
    /// Gives `env` a ledger on this server: its own database and account (with a password, in a 0600
    /// file, as a site would set it up), named in the config; the test reads it as root.
    pub fn ledger_for(&self, env: TestEnv, name: &str) -> TestEnv {
        use mysql::prelude::Queryable;
        let user = format!("dw_{name}");
        let pass = format!("pw-{}", run_token());
        let mut c = self.root();
        c.query_drop(format!("CREATE DATABASE {name}")).unwrap();
        c.query_drop(format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{pass}'"))
            .unwrap();
        c.query_drop(format!("GRANT ALL ON {name}.* TO '{user}'@'%'"))
            .unwrap();
        let file = env.tmp.path().join("ledger.pass");
        std::fs::write(&file, format!("{pass}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut env = env
            .behavior(&format!(
                "ledger: mysql://{user}@127.0.0.1:{}/{name}",
                self.port
            ))
            .behavior(&format!("ledger_password_file: {}", file.display()));
        env.ledger = Some(dirwatcher::ledger::maria::MariaTarget {
            user: "root".into(),
            host: "127.0.0.1".into(),
            port: self.port,
            database: name.into(),
            password: None,
            tls: false,
        });
        env
    }
}
