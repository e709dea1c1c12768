//! The Python original's web-app database bridge (`db:`) against a real MariaDB that each test starts for
//! itself (its own data directory and port on 127.0.0.1, so it can be stopped mid-run without touching the
//! Slurm cluster's accounting database), holding the original web application's `jobs`, `games` and
//! `users` tables: each directory's submission and end appear in `jobs` with the original's values; with
//! the database stopped, the rows wait in the outbox and are written once it is back, none twice; the
//! start-up read of the active rows names the one the ledger does not know.

use std::path::Path;
use std::time::Duration;

use mysql::prelude::Queryable;

use crate::harness::*;
use crate::mariadb::MariaDb;

const DEADLINE: Duration = Duration::from_secs(60);

/// A directory's job exits 3 when it holds a file `FAIL`, else completes; with a file `WAIT` it first
/// waits for a file `GO` (the test lets it end once it has seen the submission's row).
const JOB: &str = "wrap_cmd: \"if [ -e WAIT ]; then while [ ! -e GO ]; do sleep 0.1; done; fi; \
                   if [ -e FAIL ]; then echo failing; exit 3; fi; echo fine\"";

/// The web application's database as the original writes to it: `jobs`, and the `games` and `users` it
/// looks up; a user for dirwatcher with a password.
fn web_app_schema(db: &MariaDb) {
    let mut c = db.root();
    for q in [
        "CREATE DATABASE webapp CHARACTER SET utf8mb4",
        "CREATE TABLE webapp.users (id INT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(255) NOT NULL)",
        "CREATE TABLE webapp.games (id INT PRIMARY KEY AUTO_INCREMENT, user_id INT NOT NULL, \
         dir_path VARCHAR(1024) NOT NULL)",
        "CREATE TABLE webapp.jobs (id INT PRIMARY KEY AUTO_INCREMENT, user_id INT NULL, game_id INT NULL, \
         dir_path VARCHAR(1024) NOT NULL, slurm_job_id VARCHAR(64) NULL, status VARCHAR(64) NOT NULL, \
         created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, finished_at DATETIME NULL, \
         user_email VARCHAR(255) NULL)",
        "CREATE USER 'hmapp'@'127.0.0.1' IDENTIFIED BY 'app-s3cret'",
        "GRANT SELECT, INSERT, UPDATE ON webapp.* TO 'hmapp'@'127.0.0.1'",
    ] {
        c.query_drop(q).unwrap();
    }
}

/// A row of `jobs`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JobRow {
    user_id: Option<i64>,
    game_id: Option<i64>,
    slurm_job_id: Option<String>,
    status: String,
    finished: bool,
    user_email: Option<String>,
}

/// The columns [`rows_for`] selects.
type RawRow = (
    Option<i64>,
    Option<i64>,
    Option<String>,
    String,
    bool,
    Option<String>,
    bool,
);

fn rows_for(db: &MariaDb, dir: &Path) -> Vec<JobRow> {
    db.app()
        .exec_map(
            "SELECT user_id, game_id, slurm_job_id, status, finished_at IS NOT NULL, user_email, \
             created_at <= updated_at FROM jobs WHERE dir_path=? ORDER BY id",
            (dir.to_string_lossy().into_owned(),),
            |(user_id, game_id, slurm_job_id, status, finished, user_email, ordered): RawRow| {
                assert!(ordered, "created_at after updated_at for {}", dir.display());
                JobRow {
                    user_id,
                    game_id,
                    slurm_job_id,
                    status,
                    finished,
                    user_email,
                }
            },
        )
        .unwrap()
}

/// The one row of `dir` once it reads `status`; fails when there is more than one.
fn wait_row(db: &MariaDb, dir: &Path, status: &str) -> JobRow {
    wait_for(
        DEADLINE,
        &format!("{} to be {status} in `jobs`", dir.display()),
        || {
            let rows = rows_for(db, dir);
            assert!(
                rows.len() <= 1,
                "more than one row for {}: {rows:?}",
                dir.display()
            );
            rows.into_iter().next().filter(|r| r.status == status)
        },
    )
}

fn bridge_env(env: TestEnv, db: &MariaDb, pass: &Path) -> TestEnv {
    std::fs::write(pass, "app-s3cret\n").unwrap();
    env.job(JOB)
        // The first retry soon after the database is back.
        .notify("retry_sec: 0.5")
        .section(&format!(
            "db:\n  host: 127.0.0.1\n  port: {}\n  name: webapp\n  user: hmapp\n  pass_file: {}\n",
            db.port,
            pass.display()
        ))
}

fn the_bridge_keeps_the_web_apps_jobs_table(env: TestEnv, test: &str) {
    let Some(mut db) = MariaDb::start(test, env.tmp.path()) else {
        return;
    };
    web_app_schema(&db);
    let pass = env.tmp.path().join("db.pass");
    let env = bridge_env(env, &db, &pass);
    let game = env.root.join("game7");
    let owned = env.root.join("owned");
    {
        let mut c = db.app();
        c.exec_drop(
            "INSERT INTO games (user_id, dir_path) VALUES (?, ?)",
            (7, game.to_string_lossy().into_owned()),
        )
        .unwrap();
        c.query_drop("INSERT INTO users (id, email) VALUES (3, 'dana@example.org')")
            .unwrap();
        // An active row of a job this ledger never ran: said at start.
        c.query_drop(
            "INSERT INTO jobs (dir_path, slurm_job_id, status, created_at, updated_at) \
             VALUES ('/elsewhere/old-run', '99999', 'RUNNING', NOW(), NOW())",
        )
        .unwrap();
    }
    std::fs::create_dir_all(&owned).unwrap();
    std::fs::create_dir_all(&game).unwrap();
    std::fs::write(game.join("WAIT"), "").unwrap();
    std::fs::write(
        owned.join(".dirwatch_meta.json"),
        r#"{"user_email": "Dana Scully <dana@example.org>"}"#,
    )
    .unwrap();
    env.ready_dir("game7");
    env.ready_dir("owned");
    let mut d = env.start();
    d.wait_log("unknown to the ledger", DEADLINE);
    assert!(
        d.log().contains("/elsewhere/old-run") && d.log().contains("99999"),
        "the unknown row is named: {}",
        d.log()
    );

    // The submission: a row with the job id, `SUBMITTED`, not finished. Found in `games`: its game and
    // user; found through the meta file's address in `users`: that user and the address, as the original
    // writes them.
    let id = env.wait_job_id(&game, DEADLINE);
    let row = wait_row(&db, &game, "SUBMITTED");
    assert_eq!(
        row,
        JobRow {
            user_id: Some(7),
            game_id: Some(1),
            slurm_job_id: Some(id),
            status: "SUBMITTED".into(),
            finished: false,
            user_email: None,
        }
    );
    std::fs::write(game.join("GO"), "").unwrap();
    let g = env.wait_final(&game, DEADLINE);
    let o = env.wait_final(&owned, DEADLINE);
    let row = wait_row(&db, &game, "COMPLETED");
    assert_eq!(
        row,
        JobRow {
            user_id: Some(7),
            game_id: Some(1),
            slurm_job_id: g.job_id.clone(),
            status: "COMPLETED".into(),
            finished: true,
            user_email: None,
        }
    );
    let row = wait_row(&db, &owned, "COMPLETED");
    assert_eq!(
        (
            row.user_id,
            row.game_id,
            row.user_email.as_deref(),
            row.slurm_job_id
        ),
        (Some(3), None, Some("dana@example.org"), o.job_id.clone())
    );

    // The database stops mid-run: two more directories end meanwhile; `status` says their rows wait.
    db.stop();
    let ok = env.ready_dir("later-ok");
    let failing = env.root.join("later-fail");
    std::fs::create_dir_all(&failing).unwrap();
    std::fs::write(failing.join("FAIL"), "").unwrap();
    env.ready_dir("later-fail");
    let later_ok = env.wait_final(&ok, DEADLINE);
    let later_fail = env.wait_final(&failing, DEADLINE);
    let n = wait_for(
        DEADLINE,
        "status to show the database's rows waiting",
        || {
            let n = env.status()["notices"].clone();
            (n["waiting"].as_u64() >= Some(4)
                && n["last_error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("database hmapp@127.0.0.1:")))
            .then_some(n)
        },
    );
    assert!(!n.to_string().contains("app-s3cret"), "{n}");

    // Back: every row is written, in order (the end after the submission), each once.
    db.launch();
    let row = wait_row(&db, &ok, "COMPLETED");
    assert_eq!(row.slurm_job_id, later_ok.job_id);
    assert!(row.finished);
    let row = wait_row(&db, &failing, "FAILED");
    assert_eq!(row.slurm_job_id, later_fail.job_id);
    assert!(row.finished);
    wait_for(DEADLINE, "the outbox to empty", || {
        (env.status()["notices"]["waiting"].as_u64() == Some(0)).then_some(())
    });
    let total: Option<i64> = db.app().query_first("SELECT COUNT(*) FROM jobs").unwrap();
    assert_eq!(
        total,
        Some(5),
        "one row per directory, and the row it found at start"
    );
    d.stop();
}

/// With the local executor (the rows' values do not depend on the scheduler).
#[test]
fn the_originals_database_gets_each_submission_and_end_and_catches_up_after_an_outage() {
    the_bridge_keeps_the_web_apps_jobs_table(
        TestEnv::local("dbbridge"),
        "the_originals_database_gets_each_submission_and_end",
    );
}

/// With real Slurm jobs: the rows carry Slurm's job ids and final states.
#[test]
fn the_originals_database_gets_real_slurm_jobs() {
    if !slurm_available("the_originals_database_gets_real_slurm_jobs") {
        return;
    }
    the_bridge_keeps_the_web_apps_jobs_table(
        TestEnv::slurm("dbbridge-slurm"),
        "the_originals_database_gets_real_slurm_jobs",
    );
}
