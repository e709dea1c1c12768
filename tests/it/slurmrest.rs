//! The REST back end (`executor: slurmrest`) against a real slurmrestd: the site container's (Slurm 24.11,
//! JWT, `127.0.0.1:6820`, set up by `scripts/site-cluster.sh`; `scripts/site-cluster.sh run-tests` runs
//! this binary there). Where no slurmrestd answers these tests say SKIPPED, and fail instead with
//! `DIRWATCHER_REQUIRE_SLURMREST=1`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::rest::*;
use crate::harness::slurm::*;
use crate::harness::*;
use crate::slurm_pipeline::SLURM_DEADLINE;

/// The newest data_parser version this cluster's slurmrestd offers (`sinfo -V`), which dirwatcher must
/// speak: 24.11 offers v0.0.40–v0.0.42 (dirwatcher reads v0.0.42), 26.05 v0.0.42–v0.0.45.
fn newest_data_parser() -> &'static str {
    let out = Command::new("sinfo").arg("-V").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    match version.split_whitespace().nth(1).and_then(|v| v.get(..5)) {
        Some("24.11") => "v0.0.42",
        Some("26.05") => "v0.0.45",
        _ => panic!(
            "which data_parser versions does slurmrestd of `{}` offer? Check them (GET /openapi/v3) \
             and add the line here",
            version.trim()
        ),
    }
}

#[test]
fn a_ready_directory_gets_one_job_through_slurmrestd_with_the_configs_options() {
    if !slurmrest_available(
        "a_ready_directory_gets_one_job_through_slurmrestd_with_the_configs_options",
    ) {
        return;
    }
    let _serial = one_at_a_time();
    let (env, _) = rest_env("rest-match");
    let env = env
        .job("time_limit: \"00:10:00\"")
        .job("wrap_cmd: printf '%s|%s|%s\\n' \"$WATCH_DIR\" \"$DW_TEST\"")
        .job("env: {DW_TEST: from-config}");
    let (code, out, err) = env.check_slurm();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("asking slurmrestd"), "{out}");
    let newest = newest_data_parser();
    assert!(
        out.contains(&format!("speaks data_parser {newest}")),
        "not the newest version the server offers ({newest}): {out}"
    );

    let dir = env.ready_dir("case1");
    let d = env.start();
    let job = env.wait_job_id(&dir, SLURM_DEADLINE);
    let info = scontrol_job(&job);
    assert_eq!(info["Partition"], "main");
    assert_eq!(info["Account"], "dev");
    assert_eq!(info["TimeLimit"], "00:10:00");
    assert_eq!(info["JobName"], env.job_name("case1"));
    assert_eq!(info["WorkDir"], dir.to_string_lossy());
    let key = env.history(&dir)[0].key.clone();
    assert_eq!(
        info["Comment"], key,
        "the submission key travels as the comment"
    );
    let g = env.wait_final(&dir, SLURM_DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    let out = std::fs::read_to_string(env.job_output(&dir, &job)).unwrap();
    assert_eq!(out, format!("{0}|from-config|{0}\n", dir.display()));
    // A failing job is a failure, read from the same answers.
    drop(d);
    let env = env.job("wrap_cmd: exit 3 #");
    let bad = env.ready_dir("bad");
    let d = env.start();
    let g = env.wait_final(&bad, SLURM_DEADLINE);
    drop(d);
    assert_eq!(g.final_state.as_deref(), Some("FAILED"));
    assert_eq!(g.exit_code.as_deref(), Some("3:0"));
    assert_eq!(env.history(&dir).len(), 1, "case1 was submitted again");
    assert_eq!(wait_jobs_named(&env.job_name("case1")), vec![job]);
}

/// The connections the process `pid` holds to another process over unix sockets, by the inode of its
/// end: its sockets (`/proc/PID/fd`) whose peer (`ss -x`) is not one of its own (the daemon's signal
/// thread talks to it through a socket pair).
fn outward_sockets(pid: i32) -> Vec<String> {
    let own: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let ss = Command::new("ss")
        .args(["-x", "-H", "-a"])
        .output()
        .unwrap();
    assert!(ss.status.success(), "ss -x: {ss:?}");
    let mut out: Vec<String> = String::from_utf8_lossy(&ss.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (inode, peer) = (f.get(5)?.to_string(), f.get(7)?.to_string());
            (own.contains(&inode) && !own.contains(&peer) && peer != "0").then_some(inode)
        })
        .collect();
    out.sort();
    out
}

/// `job.slurmrest_url: unix:/path`: the whole pipeline through slurmrestd's unix socket, on one
/// connection the daemon keeps (the same socket, by inode, from the job's submission to its end, with a
/// query each poll in between); `check-config --slurm` asks through the socket too.
#[test]
fn the_pipeline_runs_over_slurmrestds_unix_socket_on_one_kept_alive_connection() {
    if !slurmrest_available(
        "the_pipeline_runs_over_slurmrestds_unix_socket_on_one_kept_alive_connection",
    ) {
        return;
    }
    assert!(
        Path::new(REST_SOCKET).exists(),
        "slurmrestd answers on {REST} but has no socket at {REST_SOCKET}: `scripts/site-cluster.sh up` \
         starts it on both"
    );
    let _serial = one_at_a_time();
    let (env, _) = rest_env("rest-unix");
    let env = env
        .job(&format!("slurmrest_url: unix:{REST_SOCKET}"))
        // Long enough for several polls while it runs.
        .job("wrap_cmd: sleep 3; echo done");
    let (code, out, err) = env.check_slurm();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("/openapi/v3 on unix:{REST_SOCKET}")),
        "{out}"
    );
    assert!(out.contains("takes the token"), "{out}");

    let dir = env.ready_dir("case1");
    let d = env.start();
    let job = env.wait_job_id(&dir, SLURM_DEADLINE);
    let first = wait_for(Duration::from_secs(10), "the daemon's connection", || {
        let s = outward_sockets(d.pid());
        (s.len() == 1).then_some(s)
    });
    let g = env.wait_final(&dir, SLURM_DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
    assert_eq!(g.job_id.as_deref(), Some(job.as_str()));
    assert_eq!(
        outward_sockets(d.pid()),
        first,
        "the daemon opened another connection (one kept alive was expected)"
    );
    let info = scontrol_job(&job);
    assert_eq!(info["Comment"], env.history(&dir)[0].key);
    assert_eq!(
        std::fs::read_to_string(env.job_output(&dir, &job)).unwrap(),
        format!("done {}\n", dir.display())
    );
    drop(d);
    assert_eq!(env.history(&dir).len(), 1);
    assert_eq!(wait_jobs_named(&env.job_name("case1")), vec![job]);

    // No socket there: said in words, with what to check.
    let env = env.job("slurmrest_url: unix:/run/slurmrestd/nothing-here.socket");
    let (code, out, err) = env.check_slurm();
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("unix:/run/slurmrestd/nothing-here.socket")
            && err.contains("is slurmrestd running"),
        "{out}{err}"
    );
}

#[test]
fn an_expired_token_is_said_with_its_fix_and_a_renewed_file_is_taken_up() {
    if !slurmrest_available("an_expired_token_is_said_with_its_fix_and_a_renewed_file_is_taken_up")
    {
        return;
    }
    let _serial = one_at_a_time();
    let (env, file) = rest_env("rest-token");
    let env = env.job("wrap_cmd: true");
    write_short_token_and_wait_until_it_expired(&file);
    let (code, _, err) = env.check_slurm();
    assert_ne!(code, 0, "an expired token passed the check");
    assert!(
        err.contains("expired") && err.contains("scontrol token"),
        "{err}"
    );

    // A new ledger's first start asks accounting, through slurmrestd, whether this root ran before: with
    // the token expired it cannot, and says so with the fix, instead of starting blind.
    let mut first = env.start();
    assert!(!first.wait_exit(SLURM_DEADLINE).success());
    assert!(first.log().contains("expired") && first.log().contains("scontrol token"));
    // With a token that works it starts, and makes its ledger.
    write_token(&file, &token(600));
    let mut d = env.start();
    d.wait_log("dirwatcher started", SLURM_DEADLINE);
    d.stop();
    // Its token expires (a daemon holds a good token until shortly before it expires, so the expired one
    // is met at a start): the directory waits, and the log says why and what to do.
    write_short_token_and_wait_until_it_expired(&file);
    let dir = env.ready_dir("case1");
    let d = env.start();
    d.wait_log("expired", SLURM_DEADLINE);
    assert!(d.log().contains("scontrol token"), "{}", d.log());
    // The site renews the file (as its timer would): the daemon takes it up without a restart.
    write_token(&file, &token(600));
    let g = env.wait_final(&dir, SLURM_DEADLINE);
    drop(d);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    assert_eq!(env.history(&dir).len(), 1);
}

fn write_short_token_and_wait_until_it_expired(file: &std::path::Path) {
    let short = token(1);
    let exp = dirwatcher::scheduler::slurm::rest::token_expiry(
        &dirwatcher::scheduler::slurm::rest::bare_token(&short),
    )
    .unwrap();
    write_token(file, &short);
    wait_for(Duration::from_secs(10), "the token to expire", || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (now > exp).then_some(())
    });
}

#[test]
fn a_job_requeued_while_running_has_one_outcome_after_its_last_run_over_rest() {
    if !slurmrest_available(
        "a_job_requeued_while_running_has_one_outcome_after_its_last_run_over_rest",
    ) {
        return;
    }
    let _serial = one_at_a_time();
    crate::verdicts::requeued_job_has_one_outcome(rest_env("rest-requeue").0);
}

/// slurmrestd itself, stopped while a job runs and started again when the job is done.
struct Stopped;

impl Stopped {
    fn slurmrestd() -> Stopped {
        systemctl("stop");
        Stopped
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        systemctl("start");
    }
}

fn systemctl(verb: &str) {
    let st = Command::new("systemctl")
        .args([verb, "slurmrestd"])
        .status()
        .unwrap();
    assert!(st.success(), "systemctl {verb} slurmrestd");
}

#[test]
fn slurmrestd_stopped_mid_run_gives_no_verdict_until_it_answers_again() {
    if !slurmrest_available("slurmrestd_stopped_mid_run_gives_no_verdict_until_it_answers_again") {
        return;
    }
    let _serial = one_at_a_time();
    let (env, _) = rest_env("rest-outage");
    let (env, runs_file) = counting_env(env);
    let dir = env.ready_dir("case");
    let d = env.start();
    let job = env.wait_job_id(&dir, SLURM_DEADLINE);
    wait_for(SLURM_DEADLINE, "the job to start", || {
        (runs(&runs_file) == 1).then_some(())
    });
    let stopped = Stopped::slurmrestd();
    d.wait_log("is not answering", Duration::from_secs(30));
    // The job ends meanwhile (it runs 6 s); with no source answering, nothing is recorded or deleted.
    wait_for(Duration::from_secs(60), "the job to end in Slurm", || {
        let out = Command::new("squeue")
            .args(["-h", "-t", "all", "-o", "%T", "-j", &job])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (s == "COMPLETED").then_some(())
    });
    let g = env.history(&dir).pop().unwrap();
    assert_eq!(g.finished_at, None, "a verdict without an answer: {g:?}");
    assert!(dir.exists(), "deleted while slurmrestd was down");
    drop(stopped);
    let g = env.wait_final(&dir, SLURM_DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
    assert_eq!(env.history(&dir).len(), 1, "one job, one record");
    let log = d.log();
    assert_eq!(
        log.matches("is not answering").count(),
        2,
        "said once per source: {log}"
    );
    assert!(log.contains("slurmrestd"), "{log}");
}

/// What makes a job lost, and what keeps a reused id from deciding ours, is the engine's (tested
/// in-process); what it needs of this transport is asked here of the real slurmrestd: for an id no job has,
/// both sources answer with no row (after `lost_after_sec` of such answers the job is lost); for an id that
/// is another job's (a reused id), the rows carry that job's own comment, which the engine calls stale.
#[test]
fn an_unknown_id_is_answered_without_rows_and_a_strangers_id_with_its_own_comment() {
    if !slurmrest_available(
        "an_unknown_id_is_answered_without_rows_and_a_strangers_id_with_its_own_comment",
    ) {
        return;
    }
    let _serial = one_at_a_time();
    use dirwatcher::engine::judge::{Identity, controller_decides, identify};
    use dirwatcher::engine::{Source, TrackedJob};
    use dirwatcher::scheduler::Scheduler;
    let (env, _) = rest_env("rest-ids");
    let env = env.job("wrap_cmd: true");
    let cfg_path = env.write_config();
    let cfg =
        dirwatcher::config::Config::parse(&std::fs::read_to_string(&cfg_path).unwrap(), &cfg_path)
            .unwrap();
    let mut rest = dirwatcher::scheduler::slurm::Slurm::rest(&cfg);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let tracked = |id: &str, key: &str| TrackedJob {
        job_id: id.into(),
        key: key.into(),
        job_name: env.job_name("case").into(),
        since: now - 60_000,
    };
    let unknown = [tracked("66999999", "dw-00000000-1")];
    let seen = rest.query(&unknown, &controller_decides).unwrap();
    assert!(
        seen.controller && seen.accounting,
        "both sources answered: {seen:?}"
    );
    assert!(seen.rows.is_empty(), "{seen:?}");

    // A stranger's held job, submitted with another comment; asked about as ours.
    let out = Command::new("sbatch")
        .args([
            "--parsable",
            "--hold",
            "-p",
            "main",
            "-A",
            "dev",
            "--comment=someone-else",
            "--job-name",
        ])
        .arg(env.job_name("case"))
        .args(["--wrap", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let ours = [tracked(&id, "dw-00000000-2")];
    let seen = rest.query(&ours, &controller_decides);
    scancel(&id);
    let seen = seen.unwrap();
    let rows: Vec<_> = seen
        .rows
        .iter()
        .filter(|r| r.source == Source::Controller)
        .collect();
    assert_eq!(rows.len(), 1, "{seen:?}");
    assert_eq!(rows[0].comment, "someone-else");
    assert_eq!(identify(&ours[0], rows[0]), Identity::Stale);
}

/// Accounting is asked at once about every job the controller no longer decides (after `MinJobAge`, an
/// outage, a daemon restart): two ended jobs in one query come back with a row each, with its own comment.
#[test]
fn accounting_answers_about_several_jobs_in_one_query() {
    if !slurmrest_available("accounting_answers_about_several_jobs_in_one_query") {
        return;
    }
    let _serial = one_at_a_time();
    use dirwatcher::engine::{JobRow, Source, TrackedJob};
    use dirwatcher::scheduler::Scheduler;
    let (env, _) = rest_env("rest-acct");
    let env = env.job("wrap_cmd: true");
    let cfg_path = env.write_config();
    let cfg =
        dirwatcher::config::Config::parse(&std::fs::read_to_string(&cfg_path).unwrap(), &cfg_path)
            .unwrap();
    let mut rest = dirwatcher::scheduler::slurm::Slurm::rest(&cfg);
    let name = env.job_name("case");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Two held jobs with keys of their own, cancelled: ended, and in accounting.
    let jobs: Vec<TrackedJob> = ["a", "b"]
        .iter()
        .map(|k| {
            let key = format!("dw-acct-{}-{k}", std::process::id());
            let out = Command::new("sbatch")
                .args(["--parsable", "--hold", "-p", "main", "-A", "dev"])
                .arg(format!("--comment={key}"))
                .args(["--job-name", &name, "--wrap", "true"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
            scancel(&id);
            TrackedJob {
                job_id: id,
                key: key.into(),
                job_name: name.as_str().into(),
                since: now - 60_000,
            }
        })
        .collect();
    for j in &jobs {
        wait_for(SLURM_DEADLINE, "accounting to have the job ended", || {
            sacct_field(&j.job_id, &name, "State")
                .starts_with("CANCELLED")
                .then_some(())
        });
    }
    // Neither is decided by the controller's rows: accounting is asked about both in one query.
    let undecided = |_: &TrackedJob, _: &[&JobRow]| false;
    let seen = rest.query(&jobs, &undecided).unwrap();
    assert!(seen.accounting, "accounting did not answer: {seen:?}");
    for j in &jobs {
        let rows: Vec<_> = seen
            .rows
            .iter()
            // Accounting may also hold an older job of the same id (a controller whose job ids were
            // reset: the fault tests do that in this container), reported too: ours is told by name.
            .filter(|r| r.source == Source::Accounting && r.job_id == j.job_id && r.name == name)
            .map(|r| (r.comment.as_str(), r.state.as_str()))
            .collect();
        assert_eq!(rows, [(&*j.key, "CANCELLED")], "{seen:?}");
    }
}

/// GET `path` below slurmrestd with a token; the status and the JSON answer (`Null` when not JSON).
fn rest_get(token: &str, path: &str) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(format!("http://{REST}{path}"))
        .header("X-SLURM-USER-TOKEN", token)
        .call()
        .unwrap();
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap();
    (
        resp.status().as_u16(),
        serde_json::from_str(&text).unwrap_or_default(),
    )
}

/// Every data_parser version dirwatcher would speak with this slurmrestd (any of those it reads that the
/// server offers, not only the newest it picks) answers the calls it makes, and alike: a held job's
/// controller row, then, once cancelled, its accounting row asked as the back end asks.
#[test]
fn every_data_parser_version_read_and_offered_answers_alike() {
    if !slurmrest_available("every_data_parser_version_read_and_offered_answers_alike") {
        return;
    }
    let _serial = one_at_a_time();
    use dirwatcher::scheduler::slurm::rest::{
        KNOWN_VERSIONS, accounting_rows, bare_token, controller_rows,
    };
    let token = bare_token(&token(600));
    let (_, spec) = rest_get(&token, "/openapi/v3");
    let paths: Vec<&String> = spec["paths"].as_object().unwrap().keys().collect();
    let offered: Vec<&str> = KNOWN_VERSIONS
        .iter()
        .copied()
        .filter(|v| {
            ["slurm", "slurmdb"]
                .iter()
                .all(|p| paths.iter().any(|k| k.starts_with(&format!("/{p}/{v}/"))))
        })
        .collect();
    assert!(
        offered.contains(&newest_data_parser()),
        "offered: {offered:?}"
    );

    let key = format!("dw-versions-{}", std::process::id());
    let name = format!("dw-versions-{}", std::process::id());
    let out = Command::new("sbatch")
        .args(["--parsable", "--hold", "-p", "main", "-A", "dev"])
        .arg(format!("--comment={key}"))
        .args(["--job-name", &name, "--wrap", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ask = |path: &str| {
        let (status, answer) = rest_get(&token, path);
        assert_eq!(status, 200, "GET {path}: {answer}");
        answer
    };
    let held: Vec<_> = offered
        .iter()
        .map(|v| controller_rows(&ask(&format!("/slurm/{v}/job/{id}")), now * 1000))
        .collect();
    scancel(&id);
    wait_for(SLURM_DEADLINE, "accounting to have the job ended", || {
        sacct_field(&id, &name, "State")
            .starts_with("CANCELLED")
            .then_some(())
    });
    let ended: Vec<_> = offered
        .iter()
        .map(|v| {
            accounting_rows(&ask(&format!(
                "/slurmdb/{v}/jobs?step={id}&start_time={}",
                now - 3600
            )))
        })
        .collect();
    let (h, e) = (&held[0], &ended[0]);
    assert_eq!(
        (h.len(), h[0].comment.as_str(), h[0].state.as_str()),
        (1, key.as_str(), "PENDING")
    );
    // Accounting may also hold an older job of the same id (a controller whose job ids were reset: the
    // fault tests do that in this container): ours is told by name.
    let ours: Vec<_> = e.iter().filter(|r| r.name == name).collect();
    assert_eq!(
        (ours.len(), ours[0].comment.as_str(), ours[0].state.as_str()),
        (1, key.as_str(), "CANCELLED")
    );
    for (i, v) in offered.iter().enumerate() {
        assert_eq!(
            &held[i], h,
            "{v} read the held job otherwise than {}",
            offered[0]
        );
        assert_eq!(
            &ended[i], e,
            "{v} read the ended job otherwise than {}",
            offered[0]
        );
    }
}

/// A cancel slurmrestd refuses is an error, as scancel's is: slurmrestd answers it with HTTP 200 and the
/// refusal in its `status` list. Here the daemon's token is another user's (dwtest) than the job's (root).
#[test]
fn a_cancel_slurmrestd_refuses_is_an_error_not_a_success() {
    if !slurmrest_available("a_cancel_slurmrestd_refuses_is_an_error_not_a_success") {
        return;
    }
    let _serial = one_at_a_time();
    use dirwatcher::engine::TrackedJob;
    use dirwatcher::scheduler::Scheduler;
    let (env, file) = rest_env("rest-cancel");
    let env = env.job("wrap_cmd: true");
    let out = Command::new("scontrol")
        .args(["token", "username=dwtest", "lifespan=600"])
        .output()
        .unwrap();
    assert!(out.status.success(), "scontrol token: {out:?}");
    write_token(&file, &String::from_utf8(out.stdout).unwrap());
    let cfg_path = env.write_config();
    let cfg =
        dirwatcher::config::Config::parse(&std::fs::read_to_string(&cfg_path).unwrap(), &cfg_path)
            .unwrap();
    let mut rest = dirwatcher::scheduler::slurm::Slurm::rest(&cfg);
    let name = env.job_name("case");
    let out = Command::new("sbatch")
        .args(["--parsable", "--hold", "-p", "main", "-A", "dev"])
        .args(["--job-name", &name, "--wrap", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let tracked = TrackedJob {
        job_id: id.clone(),
        key: "dw-00000000-1".into(),
        job_name: name.into(),
        since: 0,
    };
    let answer = rest.cancel(&tracked);
    let state = squeue_state(&id);
    scancel(&id);
    let err = answer.expect_err("a refused cancel was reported done");
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert_eq!(state, "PENDING", "the job was cancelled after all");
}

/// slurmrestd behind a proxy on 127.0.0.1 that answers the first job submission itself, with the id of a
/// job that is never created (what no real slurmrestd does on demand, as the fake `sbatch` of the CLI
/// test), and passes every other request through to slurmrestd, on one upstream connection per client
/// connection.
struct LyingProxy {
    port: u16,
}

impl LyingProxy {
    fn start(lost_id: &'static str) -> LyingProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let lied = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let lied = lied.clone();
                std::thread::spawn(move || proxy_connection(conn, lost_id, &lied));
            }
        });
        LyingProxy { port }
    }
}

/// One HTTP/1.1 message (head with its final blank line, and body by `Content-Length`); `None` at the
/// end of the stream.
fn read_message(r: &mut impl std::io::BufRead) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let lower = head.to_ascii_lowercase();
    assert!(
        !lower.contains("transfer-encoding: chunked"),
        "the proxy reads bodies by Content-Length only: {head}"
    );
    let len = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |n| n.trim().parse().unwrap());
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((head, body))
}

fn proxy_connection(
    client: std::net::TcpStream,
    lost_id: &str,
    lied: &std::sync::atomic::AtomicBool,
) {
    use std::io::{BufReader, Write};
    let mut from_client = BufReader::new(client.try_clone().unwrap());
    let mut to_client = client;
    let mut upstream: Option<(BufReader<std::net::TcpStream>, std::net::TcpStream)> = None;
    while let Some((head, body)) = read_message(&mut from_client) {
        if head.starts_with("POST ")
            && head.lines().next().unwrap_or("").contains("/job/submit")
            && !lied.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let answer = format!(
                r#"{{"job_id":{lost_id},"step_id":"batch","result":{{"job_id":{lost_id}}},"errors":[],"warnings":[]}}"#
            );
            let _ = write!(
                to_client,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            );
            continue;
        }
        // slurmrestd may have closed an idle connection: one fresh try.
        let mut answered = None;
        for _ in 0..2 {
            let (up_r, up_w) = upstream.get_or_insert_with(|| {
                let s = std::net::TcpStream::connect(REST).unwrap();
                (BufReader::new(s.try_clone().unwrap()), s)
            });
            if up_w.write_all(head.as_bytes()).is_ok() && up_w.write_all(&body).is_ok() {
                answered = read_message(up_r);
            }
            if answered.is_some() {
                break;
            }
            upstream = None;
        }
        let Some((rhead, rbody)) = answered else {
            return;
        };
        if to_client.write_all(rhead.as_bytes()).is_err() || to_client.write_all(&rbody).is_err() {
            return;
        }
    }
}

/// A job no source ever shows becomes `lost` and `retry` resubmits it: the CLI test's body
/// (`verdicts::lost_job_is_said_and_retry_resubmits_it`) over slurmrestd, the first submission answered
/// by a proxy with an id no job has.
#[test]
fn a_job_no_source_ever_shows_becomes_lost_and_retry_resubmits_it_over_rest() {
    if !slurmrest_available(
        "a_job_no_source_ever_shows_becomes_lost_and_retry_resubmits_it_over_rest",
    ) {
        return;
    }
    let _serial = one_at_a_time();
    let proxy = LyingProxy::start(crate::verdicts::LOST_ID);
    let (env, _) = rest_env("rest-lost");
    let env = env.job(&format!("slurmrest_url: http://127.0.0.1:{}", proxy.port));
    crate::verdicts::lost_job_is_said_and_retry_resubmits_it(env, &[]);
}
