//! Telling people, really delivered: e-mail to a real SMTP server the test runs (it speaks SMTP with AUTH
//! PLAIN over TCP; lettre is the client, as in production) and through a fake `sendmail` on `PATH`, webhooks
//! to a local HTTP server, the event hook; an unreachable server (nothing lost, delivered when it is back,
//! one warning); a daemon SIGKILLed between the job's end and the delivery; hostile `.dirwatch_meta.json`
//! files. The local executor where Slurm adds nothing, and one real-cluster test with e-mail.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(40);

/// One message the SMTP server accepted.
#[derive(Debug, Clone, Default)]
struct Mail {
    from: String,
    rcpts: Vec<String>,
    /// The AUTH line's credentials, decoded (`\0user\0pass`), if the client authenticated.
    auth: Option<String>,
    data: String,
}

/// A real SMTP server on 127.0.0.1 (a thread per connection): EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT.
struct SmtpServer {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    fn start() -> SmtpServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let m = Arc::clone(&mails);
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let m = Arc::clone(&m);
                std::thread::spawn(move || smtp_session(s, &m));
            }
        });
        SmtpServer { port, mails }
    }

    fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

fn b64decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = s.bytes().filter_map(val).collect();
    let mut out = Vec::new();
    for c in digits.chunks(4) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | d << (18 - 6 * i));
        for i in 0..c.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn smtp_session(s: TcpStream, mails: &Mutex<Vec<Mail>>) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let say = |w: &mut TcpStream, l: &str| {
        let _ = w.write_all(format!("{l}\r\n").as_bytes());
    };
    say(&mut w, "220 test ESMTP");
    let mut mail = Mail::default();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            say(&mut w, "250-test\r\n250-AUTH PLAIN\r\n250 8BITMIME");
        } else if upper.starts_with("AUTH PLAIN") {
            let arg = cmd[10..].trim();
            let arg = if arg.is_empty() {
                say(&mut w, "334 ");
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                l.trim().to_string()
            } else {
                arg.to_string()
            };
            mail.auth = Some(String::from_utf8_lossy(&b64decode(&arg)).into_owned());
            say(&mut w, "235 2.7.0 ok");
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = cmd[10..].trim().to_string();
            say(&mut w, "250 ok");
        } else if upper.starts_with("RCPT TO:") {
            mail.rcpts.push(cmd[8..].trim().to_string());
            say(&mut w, "250 ok");
        } else if upper == "DATA" {
            say(&mut w, "354 go on");
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 {
                    return;
                }
                if l == ".\r\n" {
                    break;
                }
                data += &l;
            }
            mail.data = data;
            mails.lock().unwrap().push(std::mem::take(&mut mail));
            say(&mut w, "250 queued");
        } else if upper == "QUIT" {
            say(&mut w, "221 bye");
            return;
        } else {
            say(&mut w, "250 ok");
        }
    }
}

/// One request the HTTP server got.
#[derive(Debug, Clone)]
struct Post {
    head: String,
    body: String,
}

/// A local HTTP server answering 200 to every request, recording each; started on a given port (or any).
struct HttpServer {
    port: u16,
    posts: Arc<Mutex<Vec<Post>>>,
}

impl HttpServer {
    fn start(port: u16) -> HttpServer {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = l.local_addr().unwrap().port();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let p = Arc::clone(&posts);
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let p = Arc::clone(&p);
                std::thread::spawn(move || http_session(s, &p));
            }
        });
        HttpServer { port, posts }
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<serde_json::Value> {
        self.posts()
            .iter()
            .map(|p| serde_json::from_str(&p.body).unwrap())
            .collect()
    }
}

fn http_session(s: TcpStream, posts: &Mutex<Vec<Post>>) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            return;
        }
        if l == "\r\n" {
            break;
        }
        head += &l;
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    posts.lock().unwrap().push(Post {
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

/// The value of header `name` in a request's head (names are case-insensitive: HTTP/2 and some clients
/// send them in lower case).
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn meta(dir: &Path, email: &str) {
    std::fs::write(
        dir.join(".dirwatch_meta.json"),
        format!("{{\"user_email\":\"{email}\",\"game_id\":7}}\n"),
    )
    .unwrap();
}

/// A directory whose job exits 3 when it holds a file `FAIL`, else completes.
const JOB: &str = "wrap_cmd: \"if [ -e FAIL ]; then echo failing; exit 3; fi; echo fine\"";

fn ready_failing(env: &TestEnv, name: &str) -> PathBuf {
    let d = env.root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("FAIL"), "").unwrap();
    env.ready_dir(name)
}

/// A hook that appends the event document it reads on stdin as one line to `file`.
fn hook_line(file: &Path) -> String {
    format!(
        "command: [\"sh\", \"-c\", \"cat >> {0}; echo >> {0}\"]",
        file.display()
    )
}

fn hook_events(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The e-mail channel with SMTP to `smtp`, AUTH with a password from a file, a webhook with a bearer
/// token to `http`, and the hook.
fn all_channels(env: TestEnv, smtp: &SmtpServer, http: &HttpServer, hook: &Path) -> TestEnv {
    let pass = env.tmp.path().join("smtp.pass");
    std::fs::write(&pass, "pa55word\n").unwrap();
    let token = env.tmp.path().join("token");
    std::fs::write(&token, "t0ken-xyz\n").unwrap();
    env.behavior("from_email: dirwatcher@example.org")
        .behavior("smtp_host: 127.0.0.1")
        .behavior(&format!("smtp_port: {}", smtp.port))
        .behavior("smtp_user: dw")
        .behavior(&format!("smtp_pass_file: {}", pass.display()))
        .behavior("smtp_use_tls: false")
        .notify("email_via: smtp")
        .notify(&format!(
            "webhooks: [\"http://127.0.0.1:{}/hooks/secret-path\"]",
            http.port
        ))
        .notify(&format!("webhook_token_file: {}", token.display()))
        .notify(&hook_line(hook))
        .notify("retry_sec: 0.5")
}

/// What a user checks in the mails of one COMPLETED and one FAILED directory.
fn assert_one_mail_each(smtp: &SmtpServer, ok: &Path, bad: &Path, ok_job: &str, bad_job: &str) {
    let mails = smtp.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    for m in &mails {
        assert_eq!(m.rcpts, ["<owner@example.org>"]);
        assert_eq!(m.from, "<dirwatcher@example.org>");
        assert_eq!(
            m.auth.as_deref(),
            Some("\0dw\0pa55word"),
            "AUTH with the file's password"
        );
        assert!(m.data.contains("To: owner@example.org\r\n"), "{}", m.data);
    }
    let ok_mail = mails
        .iter()
        .find(|m| m.data.contains("COMPLETED:"))
        .expect("a mail for the COMPLETED job");
    for want in [
        ok.to_string_lossy().as_ref(),
        ok_job,
        "COMPLETED",
        ".dirwatcher/logs/",
        &format!("-ok-{ok_job}.out"),
    ] {
        assert!(
            ok_mail.data.contains(want),
            "{want} missing:\n{}",
            ok_mail.data
        );
    }
    let bad_mail = mails
        .iter()
        .find(|m| m.data.contains("Subject: [dirwatcher] FAILED"))
        .expect("a mail for the FAILED job");
    for want in [
        bad.to_string_lossy().as_ref(),
        bad_job,
        "exit code",
        "3:0",
        ".dirwatcher/logs/",
        &format!("-bad-{bad_job}.out"),
    ] {
        assert!(
            bad_mail.data.contains(want),
            "{want} missing:\n{}",
            bad_mail.data
        );
    }
}

fn job_of(env: &TestEnv, d: &Path) -> String {
    env.wait_final(d, DEADLINE).job_id.unwrap()
}

#[test]
fn local_completed_and_failed_jobs_tell_every_channel_once() {
    let smtp = SmtpServer::start();
    let http = HttpServer::start(0);
    let env = TestEnv::local("tell");
    let hook = env.tmp.path().join("hook.log");
    let env = all_channels(env.job(JOB), &smtp, &http, &hook);
    let ok = env.ready_dir("ok");
    let bad = ready_failing(&env, "bad");
    meta(&ok, "owner@example.org");
    meta(&bad, "owner@example.org");
    let d = env.start();
    let (ok_job, bad_job) = (job_of(&env, &ok), job_of(&env, &bad));
    wait_for(DEADLINE, "two mails, two posts, two hook runs", || {
        (smtp.mails().len() >= 2 && http.posts().len() >= 2 && hook_events(&hook).len() >= 2)
            .then_some(())
    });
    // Some more cycles: nothing is sent twice.
    d.wait_log("told", DEADLINE);
    std::thread::sleep(Duration::from_millis(1500)); // a quiet period, not synchronisation
    assert_one_mail_each(&smtp, &ok, &bad, &ok_job, &bad_job);
    let posts = http.posts();
    assert_eq!(posts.len(), 2);
    for p in &posts {
        assert!(p.head.starts_with("POST /hooks/secret-path "), "{}", p.head);
        assert_eq!(
            header(&p.head, "Authorization"),
            Some("Bearer t0ken-xyz"),
            "{}",
            p.head
        );
    }
    let mut states: Vec<String> = http
        .events()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["event"].as_str().unwrap(),
                e["state"].as_str().unwrap()
            )
        })
        .collect();
    states.sort();
    assert_eq!(states, ["completed:COMPLETED", "failed:FAILED"]);
    let hooked = hook_events(&hook);
    assert_eq!(hooked.len(), 2);
    assert_eq!(
        hooked
            .iter()
            .map(|e| e["schema"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["dirwatcher.event/1"; 2]
    );
    let log = d.log();
    for secret in ["pa55word", "t0ken-xyz", "secret-path"] {
        assert!(!log.contains(secret), "the log shows `{secret}`:\n{log}");
    }
}

#[test]
fn sendmail_on_path_is_used_first_as_the_original_does() {
    let env = TestEnv::local("sendmail");
    let bin = env.tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let out = env.tmp.path().join("sendmail.out");
    let script = bin.join("sendmail");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"ARGS: $*\" >> {0}\ncat >> {0}\necho '--END--' >> {0}\n",
            out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = env
        .job(JOB)
        .notify("email_to: [ops@example.org]")
        .behavior("from_email: dw@example.org");
    let ok = env.ready_dir("ok");
    meta(&ok, "owner@example.org");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let d = env.start_env(&[], &[("PATH", path.as_ref())]);
    let job = job_of(&env, &ok);
    // One message per recipient, each with its own To:, a Date and a Message-ID.
    let text = wait_for(DEADLINE, "two messages through sendmail", || {
        std::fs::read_to_string(&out)
            .ok()
            .filter(|t| t.matches("--END--").count() == 2)
    });
    assert!(text.starts_with("ARGS: -t -oi\n"), "{text}");
    for to in ["To: owner@example.org\n", "To: ops@example.org\n"] {
        assert_eq!(text.matches(to).count(), 1, "{to:?}: {text}");
    }
    assert_eq!(text.matches("\nDate: ").count(), 2, "{text}");
    let ids: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Message-ID: <"))
        .collect();
    assert_eq!(ids.len(), 2, "one Message-ID each: {text}");
    assert!(ids.iter().all(|i| i.ends_with("@example.org>")), "{ids:?}");
    assert!(
        text.contains(&format!("COMPLETED: {} (job {job})", ok.display())),
        "{text}"
    );
    assert!(!text.contains('\r'), "sendmail gets local line ends");
    assert!(d.log().contains("via `"), "{}", d.log());
}

#[test]
fn an_unreachable_webhook_loses_nothing_warns_once_and_delivers_when_it_is_back() {
    let port = free_port();
    let env = TestEnv::local("unreach")
        .job(JOB)
        .notify(&format!("webhooks: [\"http://127.0.0.1:{port}/h\"]"))
        .notify("retry_sec: 0.3")
        .notify("timeout_sec: 2");
    let a = env.ready_dir("a");
    let b = ready_failing(&env, "b");
    let d = env.start();
    env.wait_final(&a, DEADLINE);
    env.wait_final(&b, DEADLINE);
    d.wait_log("cannot deliver to http://127.0.0.1", DEADLINE);
    // Several retries fail meanwhile (0.3 s, 0.6 s, 1.2 s, …): still one warning.
    wait_for(DEADLINE, "three failed deliveries in the outbox", || {
        let l = dirwatcher::ledger::Ledger::open(&env.state_file()).ok()?;
        let tries: u64 = l
            .due_notices(i64::MAX, 100)
            .ok()?
            .iter()
            .map(|n| u64::from(n.attempts))
            .sum();
        (tries >= 3).then_some(())
    });
    // What an operator sees meanwhile: both notices waiting, and why.
    let n = &env.status()["notices"];
    assert_eq!(n["waiting"], 2, "{n}");
    assert_eq!(n["given_up"], 0, "{n}");
    let why = n["last_error"].as_str().unwrap_or_default();
    assert!(
        why.starts_with(&format!("webhook to http://127.0.0.1:{port}/h: ")),
        "{n}"
    );
    let http = HttpServer::start(port);
    wait_for(DEADLINE, "both events delivered", || {
        (http.posts().len() >= 2).then_some(())
    });
    d.wait_log("works again", DEADLINE);
    wait_for(DEADLINE, "status to show no notice waiting", || {
        (env.status()["notices"]["waiting"] == 0).then_some(())
    });
    let log = d.log();
    assert_eq!(
        log.matches("cannot deliver to").count(),
        1,
        "one warning per outage:\n{log}"
    );
    let mut events: Vec<String> = http
        .events()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    events.sort();
    assert_eq!(
        events,
        ["completed", "failed"],
        "nothing lost, nothing twice"
    );
}

#[test]
fn a_daemon_killed_between_the_end_and_the_delivery_delivers_once_after_the_restart() {
    let port = free_port();
    let env = TestEnv::local("kill")
        .job(JOB)
        .notify(&format!("webhooks: [\"http://127.0.0.1:{port}/h\"]"))
        .notify("retry_sec: 0.3");
    let a = env.ready_dir("a");
    let mut d = env.start();
    env.wait_final(&a, DEADLINE);
    d.wait_log("cannot deliver", DEADLINE);
    d.kill9();
    let http = HttpServer::start(port);
    let d = env.start();
    wait_for(DEADLINE, "the delivery after the restart", || {
        (!http.posts().is_empty()).then_some(())
    });
    d.wait_log("told http://127.0.0.1", DEADLINE);
    std::thread::sleep(Duration::from_secs(2)); // a quiet period, not synchronisation
    assert_eq!(http.posts().len(), 1, "delivered twice");
    assert_eq!(http.events()[0]["event"], "completed");
}

#[test]
fn hostile_meta_files_get_no_mail_and_say_why() {
    let smtp = SmtpServer::start();
    let env = TestEnv::local("hostile-meta")
        .job(JOB)
        .behavior("smtp_host: 127.0.0.1")
        .behavior(&format!("smtp_port: {}", smtp.port))
        .behavior("smtp_use_tls: false")
        .notify("email_via: smtp");
    let good = env.ready_dir("good");
    meta(&good, "owner@example.org");
    let huge = env.ready_dir("huge");
    std::fs::write(huge.join(".dirwatch_meta.json"), vec![b' '; 1 << 20]).unwrap();
    let link = env.ready_dir("link");
    let elsewhere = env.tmp.path().join("elsewhere.json");
    std::fs::write(&elsewhere, r#"{"user_email":"victim@example.org"}"#).unwrap();
    std::os::unix::fs::symlink(&elsewhere, link.join(".dirwatch_meta.json")).unwrap();
    let notjson = env.ready_dir("notjson");
    std::fs::write(
        notjson.join(".dirwatch_meta.json"),
        "user_email: x@example.org",
    )
    .unwrap();
    let inject = env.ready_dir("inject");
    std::fs::write(
        inject.join(".dirwatch_meta.json"),
        "{\"user_email\":\"a@example.org\\r\\nBcc: victim@example.org\"}",
    )
    .unwrap();
    let d = env.start();
    for dir in [&good, &huge, &link, &notjson, &inject] {
        env.wait_final(dir, DEADLINE);
    }
    wait_for(DEADLINE, "the good directory's mail", || {
        (!smtp.mails().is_empty()).then_some(())
    });
    for why in [
        "larger than",
        "not a regular file",
        "not a JSON object",
        "not a plain e-mail address",
    ] {
        d.wait_log(why, DEADLINE);
    }
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0].rcpts, ["<owner@example.org>"]);
    assert!(!mails[0].data.contains("victim"), "{}", mails[0].data);
}

#[test]
fn check_config_accepts_the_originals_whole_config_and_hides_its_password() {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("config.yaml");
    let text = include_str!("../data/original-full-config.yaml")
        .replace("/data/incoming", &t.path().to_string_lossy());
    std::fs::write(&cfg, text).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("smtp_host: \"smtp.example.org\""),
        "{stdout}"
    );
    assert!(stdout.contains("smtp_pass: \"<secret>\""), "{stdout}");
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
    // The original's database bridge is on, its password hidden too.
    assert!(
        stdout.contains("db:\n  host: \"127.0.0.1\"\n  port: 3306\n  name: \"hm_app_db\""),
        "{stdout}"
    );
    assert!(stdout.contains("  pass: \"<secret>\""), "{stdout}");
    assert!(!stdout.contains("hmapp_pass") && !stderr.contains("hmapp_pass"));
}

#[test]
fn the_originals_install_command_lines_run_as_a_dry_run() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("incoming");
    std::fs::create_dir(&root).unwrap();
    let readme_line = [
        "install",
        "--watch-root",
        root.to_str().unwrap(),
        "--signal-file",
        "_READY",
        "--partition",
        "main",
        "--account",
        "dev",
        "--gres",
        "gpu:1",
        "--time",
        "00:10:00",
    ];
    let extra = [
        "--user",
        "dirwatcher",
        "--python-bin",
        "/usr/bin/python3",
        "--smtp-setup",
        "--from-email",
        "dw@example.org",
        "--smtp-host",
        "smtp.example.org",
        "--smtp-port",
        "587",
        "--smtp-user",
        "dw",
        "--smtp-pass",
        "hunter2",
        "--smtp-use-tls",
        "--db-name",
        "hm_app_db",
        "--db-user",
        "hmapp",
        "--db-pass",
        "hmapp_pass",
        "--db-host",
        "127.0.0.1",
        "--db-port",
        "3306",
    ];
    for args in [
        readme_line.to_vec(),
        [&readme_line[..], &extra[..]].concat(),
    ] {
        // Staged under a scratch destdir: what is installed on this machine (a site test's service, say)
        // is not what these command lines are judged against.
        let out = std::process::Command::new(BIN)
            .args(&args)
            .arg("--dry-run")
            .arg("--destdir")
            .arg(t.path().join("stage"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}:\n{text}");
        if args.len() > readme_line.len() {
            for want in [
                "--python-bin is ignored",
                "--db-* write the `db:` section",
                "config.db.pass, mode 0600",
                "--smtp-pass is written into its own file",
                "config.smtp.pass (0600",
                "--smtp-setup",
            ] {
                assert!(text.contains(want), "{want} missing:\n{text}");
            }
            assert!(
                !text.contains("hunter2") && !text.contains("hmapp_pass"),
                "{text}"
            );
        }
    }
}

/// The original's `--smtp-pass` gives a relay that logs in: the password goes into a file of its own, the
/// service user's alone (0600), which the config names; never into the config or the install's output.
#[test]
fn install_smtp_pass_writes_a_private_password_file_the_config_names() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("incoming");
    std::fs::create_dir(&root).unwrap();
    let stage = t.path().join("stage");
    let out = std::process::Command::new(BIN)
        .args(["install", "--watch-root"])
        .arg(&root)
        .args(["--smtp-host", "smtp.example.org", "--smtp-user", "dw"])
        .args(["--smtp-pass", "hunter2", "--destdir"])
        .arg(&stage)
        .args(["--db-host", "db.example.org", "--db-pass", "app-pw"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let private = |path: &Path, content: &str| {
        assert_eq!(std::fs::read_to_string(path).unwrap(), content);
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{}: {mode:o}", path.display());
    };
    private(&stage.join("etc/dirwatcher/config.smtp.pass"), "hunter2\n");
    let config = std::fs::read_to_string(stage.join("etc/dirwatcher/config.yaml")).unwrap();
    assert!(
        config.contains("smtp_pass_file: \"/etc/dirwatcher/config.smtp.pass\""),
        "{config}"
    );
    assert!(!config.contains("hunter2"), "{config}");
    // The original's --db-* flags: its `db:` section, the password in a file of its own.
    assert!(
        config.contains(
            "\ndb:\n  host: \"db.example.org\"\n  pass_file: \"/etc/dirwatcher/config.db.pass\"\n"
        ),
        "{config}"
    );
    assert!(
        !config.contains("app-pw") && !text.contains("app-pw"),
        "{config}"
    );
    private(&stage.join("etc/dirwatcher/config.db.pass"), "app-pw\n");
}

#[test]
fn a_staged_install_does_not_need_the_watch_root_and_a_real_one_says_what_to_do() {
    let t = tempfile::tempdir().unwrap();
    let stage = t.path().join("stage");
    let out = std::process::Command::new(BIN)
        .args([
            "install",
            "--watch-root",
            "/data/incoming-not-here",
            "--destdir",
        ])
        .arg(&stage)
        .args([
            "--smtp-host",
            "smtp.example.org",
            "--from-email",
            "dw@example.org",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let cfg = std::fs::read_to_string(stage.join("etc/dirwatcher/config.yaml")).unwrap();
    assert!(cfg.contains("root: /data/incoming-not-here"), "{cfg}");
    assert!(cfg.contains("smtp_host: \"smtp.example.org\""), "{cfg}");
    let out = std::process::Command::new(BIN)
        .args([
            "install",
            "--dry-run",
            "--watch-root",
            "/data/incoming-not-here",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("mkdir -p /data/incoming-not-here") && err.contains("--destdir"),
        "{err}"
    );
}

#[test]
fn slurm_completed_and_failed_jobs_email_their_owner_once_each() {
    if !slurm_available("slurm_completed_and_failed_jobs_email_their_owner_once_each") {
        return;
    }
    let smtp = SmtpServer::start();
    let http = HttpServer::start(0);
    let env = TestEnv::slurm("tell");
    let hook = env.tmp.path().join("hook.log");
    let env = all_channels(env.job(JOB), &smtp, &http, &hook);
    let ok = env.ready_dir("ok");
    let bad = ready_failing(&env, "bad");
    meta(&ok, "owner@example.org");
    meta(&bad, "owner@example.org");
    let d = env.start();
    let deadline = Duration::from_secs(120);
    let ok_job = env.wait_final(&ok, deadline).job_id.unwrap();
    let bad_job = env.wait_final(&bad, deadline).job_id.unwrap();
    wait_for(deadline, "two mails, two posts, two hook runs", || {
        (smtp.mails().len() >= 2 && http.posts().len() >= 2 && hook_events(&hook).len() >= 2)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2)); // a quiet period, not synchronisation
    assert_one_mail_each(&smtp, &ok, &bad, &ok_job, &bad_job);
    let failed = env.wait_failure(&bad, deadline);
    assert_eq!(failed["reason"], "NonZeroExitCode", "{failed}");
    assert!(
        failed["nodes"].as_str().is_some_and(|n| !n.is_empty()),
        "{failed}"
    );
    assert!(failed["elapsed_sec"].is_u64(), "{failed}");
    assert_eq!(
        failed["output"],
        env.root
            .join(".dirwatcher/logs")
            .join(format!("{}-{bad_job}.out", env.job_name("bad")))
            .to_string_lossy()
            .as_ref()
    );
    let bad_event = http
        .events()
        .into_iter()
        .find(|e| e["event"] == "failed")
        .unwrap();
    assert_eq!(bad_event["reason"], "NonZeroExitCode", "{bad_event}");
    assert_eq!(hook_events(&hook).len(), 2);
    drop(d);
}

/// A webhook that accepts and never answers, and a hook that exits at once but leaves a `setsid` child
/// holding its output: deliveries run beside the loop, so a new directory is still submitted within a few
/// polls, SIGTERM still ends the daemon at once, and the notices wait in the outbox (nothing lost).
#[test]
fn a_stalled_webhook_and_a_hook_s_leftover_child_hold_neither_the_loop_nor_sigterm() {
    let stall = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stall.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for s in stall.incoming().flatten() {
                // Keep the connection open, say nothing.
                held.lock().unwrap().push(s);
            }
        });
    }
    let hook_log = tempfile::NamedTempFile::new().unwrap();
    let env = TestEnv::local("stall")
        .job(JOB)
        .notify(&format!("webhooks: [\"http://127.0.0.1:{port}/h\"]"))
        .notify(&format!(
            "command: [\"sh\", \"-c\", \"cat >> {0}; echo >> {0}; setsid sleep 300 >/dev/null 2>&1 & sleep 300 &\"]",
            hook_log.path().display()
        ))
        .notify("events: [submitted, completed]")
        .notify("timeout_sec: 60");
    let a = env.ready_dir("a");
    let mut d = env.start();
    env.wait_final(&a, DEADLINE);
    wait_for(DEADLINE, "the webhook to be called", || {
        (!held.lock().unwrap().is_empty()).then_some(())
    });
    // The webhook holds its delivery for up to a minute: a new directory is not held up by it.
    let b = env.ready_dir("b");
    let g = env.wait_final(&b, Duration::from_secs(10));
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    // Nor is the hook: each of its calls leaves two sleepers behind, and every event still reaches it.
    wait_for(DEADLINE, "the hook's four deliveries recorded", || {
        let l = dirwatcher::ledger::Ledger::open(&env.state_file()).ok()?;
        (l.notice_counts().ok()?.sent == 4).then_some(())
    });
    assert_eq!(
        hook_events(hook_log.path()).len(),
        4,
        "told twice or not at all"
    );
    let (st, took) = d.stop();
    assert!(st.success(), "{st:?}");
    assert!(
        took < Duration::from_secs(3),
        "SIGTERM took {took:?} during a stalled delivery"
    );
    // Nothing lost: what was not delivered waits in the outbox for the next start.
    let l = dirwatcher::ledger::Ledger::open(&env.state_file()).unwrap();
    let c = l.notice_counts().unwrap();
    assert_eq!((c.pending, c.sent), (4, 4), "{c:?}");
}

/// An operator who may read the config and the ledger but not the secret files (0600, the service user's)
/// still gets `status` and `explain`, with a note that the secret was left unread; `check-config
/// --secrets`, as the daemon, refuses.
#[test]
fn status_and_explain_run_for_an_operator_who_cannot_read_the_secrets() {
    use std::os::unix::fs::PermissionsExt;
    if unsafe { libc::geteuid() } != 0 {
        assert!(!slurm_required(), "needs root (runuser, chmod)");
        return;
    }
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "t0ken\n").unwrap();
    std::fs::set_permissions(token.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = TestEnv::local("opsecret")
        .job(JOB)
        .notify("webhooks: [\"http://127.0.0.1:9/h\"]")
        .notify(&format!("webhook_token_file: {}", token.path().display()));
    let a = env.ready_dir("a");
    let _d = env.start();
    env.wait_final(&a, DEADLINE);
    // The operator may read the config, the ledger (with the daemon running, as `status` is used) and
    // the root, as a member of the service's group would; not the secret.
    for p in [env.tmp.path().to_path_buf(), env.root.clone(), a.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ledger_files = ["", "-wal", "-shm"].map(|x| {
        let mut p = env.state_file().into_os_string();
        p.push(x);
        std::path::PathBuf::from(p)
    });
    for p in ledger_files.iter().chain([&env.config_path()]) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let as_operator = |args: &[&str]| {
        std::process::Command::new("runuser")
            .args(["-u", "dwtest", "--", BIN])
            .args(args)
            .arg("--config")
            .arg(env.config_path())
            .output()
            .unwrap()
    };
    let out = as_operator(&["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "status: {err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("completed"),
        "{out:?}"
    );
    assert!(
        err.contains("notify.webhook_token_file") && err.contains("left unread"),
        "{err}"
    );
    let out = std::process::Command::new("runuser")
        .args(["-u", "dwtest", "--", BIN, "explain", "--config"])
        .arg(env.config_path())
        .arg(&a)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "explain: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_operator(&["check-config", "--secrets"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read"),
        "{out:?}"
    );
}

/// A failed job's notice says what happens next and carries the end of its output; an operator's cancel
/// is told too, naming the operator.
#[test]
fn a_failure_carries_its_output_s_tail_and_what_next_and_a_cancel_names_the_operator() {
    let hook = tempfile::NamedTempFile::new().unwrap();
    let env = TestEnv::local("tail")
        .job(
            "wrap_cmd: \"if [ -e SLOW ]; then sleep 60; fi; for i in $(seq 1 60); do echo line $i; done; \
             printf 'Traceback: \\\\033[31mboom\\\\n'; exit 3\"",
        )
        .notify(&hook_line(hook.path()))
        .notify("events: [failed, cancelled]");
    let bad = env.ready_dir("bad");
    let _d = env.start();
    env.wait_final(&bad, DEADLINE);
    let e = wait_for(DEADLINE, "the failure notice", || {
        hook_events(hook.path())
            .into_iter()
            .find(|e| e["event"] == "failed")
    });
    let tail = e["output_tail"].as_str().unwrap_or_default();
    assert_eq!(tail.lines().count(), 40, "{tail}");
    assert!(tail.starts_with("line 22\n"), "{tail}");
    assert!(tail.ends_with("Traceback: ?[31mboom"), "{tail}");
    let next = e["next"].as_str().unwrap_or_default();
    assert!(
        next.contains("no automatic retry is left") && next.contains("dirwatcher retry"),
        "{next}"
    );

    let slow = env.root.join("slow");
    std::fs::create_dir(&slow).unwrap();
    std::fs::write(slow.join("SLOW"), "").unwrap();
    let slow = env.ready_dir("slow");
    wait_for(DEADLINE, "the slow job to run", || {
        env.history(&slow)
            .pop()
            .filter(|g| g.job_id.is_some())
            .map(|_| ())
    });
    let out = std::process::Command::new(BIN)
        .args(["cancel", "--config"])
        .arg(env.config_path())
        .arg(&slow)
        .env("SUDO_USER", "alice")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let e = wait_for(DEADLINE, "the cancel notice", || {
        hook_events(hook.path())
            .into_iter()
            .find(|e| e["event"] == "cancelled")
    });
    let by = e["by"].as_str().unwrap_or_default();
    assert!(by.starts_with("alice (as "), "{e}");
    assert_eq!(e["dir"], slow.to_string_lossy().as_ref());
    holds_for(
        Duration::from_secs(2),
        "the cancelled job's own end is not told again",
        || hook_events(hook.path()).len() == 2,
    );
}

/// The Python that runs the tests' own TLS servers (aiosmtpd): `DIRWATCHER_TEST_PYTHON`, or the venv
/// `scripts/test.sh` makes. Missing: the test fails when CI asks for it, else it is skipped.
fn tls_python(test: &str) -> Option<PathBuf> {
    let p = std::env::var_os("DIRWATCHER_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let v = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
            v.exists().then_some(v)
        })
        .filter(|p| {
            std::process::Command::new(p)
                .args(["-c", "import aiosmtpd"])
                .status()
                .is_ok_and(|s| s.success())
        });
    if p.is_none() {
        let required = std::env::var("CI").is_ok_and(|v| v == "true")
            || std::env::var_os("DIRWATCHER_TEST_PYTHON").is_some();
        assert!(
            !required,
            "{test}: needs a Python with aiosmtpd (scripts/test.sh makes target/test-venv)"
        );
        eprintln!(
            "SKIPPED {test}: no Python with aiosmtpd (scripts/test.sh makes target/test-venv)"
        );
    }
    p
}

/// A CA of the tests' own and a certificate for 127.0.0.1 it signed: (CA, cert, key).
fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=dirwatcher test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

/// The tests' SMTP (STARTTLS required, AUTH) and HTTPS servers; stopped when dropped.
struct TlsServers {
    child: std::process::Child,
    smtp: u16,
    https: u16,
    out: PathBuf,
}

impl TlsServers {
    fn start(python: &Path, dir: &Path, cert: &Path, key: &Path, user: &str, pass: &str) -> Self {
        let out = dir.join("received");
        std::fs::create_dir(&out).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls_servers.py");
        let mut child = std::process::Command::new(python)
            .arg(script)
            .args([cert, key, &out])
            .args([user, pass])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the TLS servers did not start ({e}): {line:?}"));
        TlsServers {
            child,
            smtp: ports["smtp"].as_u64().unwrap() as u16,
            https: ports["https"].as_u64().unwrap() as u16,
            out,
        }
    }

    /// What arrived, by file name prefix (`mail-`, `post-`), as text.
    fn received(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<(PathBuf, String)> = std::fs::read_dir(&self.out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap_or_default()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, t)| t).collect()
    }
}

impl Drop for TlsServers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Against a real SMTP server that requires STARTTLS and AUTH, and an HTTPS webhook, both with a
/// certificate of the tests' own CA: each recipient gets one mail with a Date and a Message-ID, over TLS,
/// logged in; the webhook gets the event with its delivery id and token. A wrong password is an error
/// `status` shows, and the notice waits in the outbox.
#[test]
fn mail_over_starttls_with_auth_and_a_webhook_over_https_arrive_and_a_wrong_password_is_shown() {
    let Some(python) = tls_python("mail_over_starttls_with_auth") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_ca(t.path());
    let servers = TlsServers::start(&python, t.path(), &cert, &key, "dw", "s3cret");
    let pass = t.path().join("smtp.pass");
    let token = t.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let tls_env = |env: TestEnv, password: &str| {
        std::fs::write(&pass, format!("{password}\n")).unwrap();
        env.job(JOB)
            .behavior("from_email: dw@example.org")
            .behavior("smtp_host: 127.0.0.1")
            .behavior(&format!("smtp_port: {}", servers.smtp))
            .behavior("smtp_user: dw")
            .behavior(&format!("smtp_pass_file: {}", pass.display()))
            .behavior("smtp_use_tls: true")
            .notify("email_via: smtp")
            .notify("email_to: [\"Ops Team <ops@example.org>\", dana@example.org]")
            .notify(&format!(
                "webhooks: [\"https://127.0.0.1:{}/h\"]",
                servers.https
            ))
            .notify(&format!("webhook_token_file: {}", token.display()))
            .notify("events: [completed]")
            .notify("retry_sec: 0.5")
    };
    // The daemon trusts the tests' CA through its environment (rustls-native-certs reads `SSL_CERT_FILE`),
    // as a site's own CA bundle would be named.
    let trust: [(&str, &std::ffi::OsStr); 1] = [("SSL_CERT_FILE", ca.as_os_str())];
    let env = tls_env(TestEnv::local("tls"), "s3cret");
    let ok = env.ready_dir("ok");
    let _d = env.start_env(&[], &trust);
    env.wait_final(&ok, DEADLINE);
    let mails = wait_for(DEADLINE, "two mails", || {
        Some(servers.received("mail-")).filter(|m| m.len() == 2)
    });
    for (m, rcpt, to) in [
        (
            &mails,
            "ops@example.org",
            "To: \"Ops Team\" <ops@example.org>\r\n",
        ),
        (&mails, "dana@example.org", "To: dana@example.org\r\n"),
    ] {
        let mail = m
            .iter()
            .find(|m| m.contains(&format!("X-Test-Rcpt: {rcpt}\r\n")))
            .unwrap_or_else(|| panic!("no mail to {rcpt}: {m:?}"));
        assert!(
            mail.starts_with("X-Test-Auth: dw\r\nX-Test-TLS: yes\r\n"),
            "{mail}"
        );
        assert!(mail.contains(to), "{mail}");
        assert!(
            mail.contains("\r\nDate: ") && mail.contains("\r\nMessage-ID: <"),
            "{mail}"
        );
        assert!(!mail.contains("s3cret"), "{mail}");
    }
    let post = wait_for(DEADLINE, "the webhook", || {
        servers.received("post-").into_iter().next()
    });
    assert_eq!(
        header(&post, "X-Test-Header-Authorization"),
        Some("Bearer t0ken"),
        "{post}"
    );
    assert!(
        header(&post, "X-Test-Header-X-Dirwatcher-Delivery").is_some_and(|v| !v.is_empty()),
        "{post}"
    );
    let body: serde_json::Value = serde_json::from_str(post.split_once("\n\n").unwrap().1).unwrap();
    assert_eq!(body["event"], "completed", "{body}");
    assert!(body["delivery_id"].is_string(), "{body}");

    // A wrong password: refused by the server, said in `status`, the notices kept.
    let env = tls_env(TestEnv::local("tlsbad"), "wrong");
    let bad = env.ready_dir("bad");
    let _d = env.start_env(&[], &trust);
    env.wait_final(&bad, DEADLINE);
    let n = wait_for(DEADLINE, "status to show the failing delivery", || {
        let n = env.status()["notices"].clone();
        n["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("email to "))
            .then_some(n)
    });
    assert!(n["waiting"].as_u64().unwrap() >= 2, "{n}");
    let e = n["last_error"].as_str().unwrap();
    assert!(e.contains("Login denied") || e.contains("535"), "{e}");
    assert!(!e.contains("wrong"), "the password is never shown: {e}");
    assert_eq!(servers.received("mail-").len(), 2, "no mail got through");
}

/// Every channel carries hostile directory names as text: the hook gets each name in its event (as the
/// document's lossy UTF-8), a chat webhook shows no mention or link a name smuggles in, a mail's headers
/// stay the headers dirwatcher writes, and no name is ever run.
#[test]
fn every_channel_carries_hostile_names_as_text_and_runs_none() {
    let names = crate::hostile::names(60, 23);
    let http = HttpServer::start(0);
    let bin = tempfile::tempdir().unwrap();
    let mails = bin.path().join("mails");
    std::fs::create_dir(&mails).unwrap();
    let script = bin.path().join("sendmail");
    std::fs::write(
        &script,
        format!(
            // Written aside, then moved in whole: the test counts a mail only once it is all there.
            "#!/bin/sh\nt=$(mktemp {0}/part.XXXXXX)\ncat > \"$t\"\nmv \"$t\" {1}/\n",
            bin.path().display(),
            mails.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hook = tempfile::NamedTempFile::new().unwrap();
    let env = TestEnv::local("hostilech")
        .job("wrap_cmd: \"true\"")
        .job("max_local_jobs: 16")
        .notify(&hook_line(hook.path()))
        .notify(&format!("webhooks: [\"http://127.0.0.1:{}/h\"]", http.port))
        .notify("webhook_format: slack")
        .notify("email_to: [ops@example.org]")
        .notify("events: [completed]");
    let dirs: Vec<PathBuf> = names.iter().map(|n| env.ready_dir(n)).collect();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let _d = env.start_env(&[], &[("PATH", path.as_ref())]);
    wait_for(
        Duration::from_secs(120),
        "every channel told of every directory",
        || {
            let mailed = std::fs::read_dir(&mails).ok()?.count();
            (hook_events(hook.path()).len() == names.len()
                && http.posts().len() == names.len()
                && mailed == names.len())
            .then_some(())
        },
    );
    let told: BTreeSet<String> = hook_events(hook.path())
        .iter()
        .map(|e| e["dir"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = dirs
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    assert_eq!(told, want, "the hook was told of each name");
    for p in http.posts() {
        let text = serde_json::from_str::<serde_json::Value>(&p.body).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!text.contains('<') && !text.contains('>'), "{text:?}");
    }
    let headers = [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Auto-Submitted",
    ];
    for m in std::fs::read_dir(&mails).unwrap() {
        let m = std::fs::read(m.unwrap().path()).unwrap();
        let m = String::from_utf8_lossy(&m);
        let (head, _) = m.split_once("\n\n").expect("a header block");
        for l in head.lines() {
            let name = l.split_once(':').map(|(k, _)| k).unwrap_or(l);
            assert!(
                headers.contains(&name),
                "a header dirwatcher did not write: {l:?}\n{head}"
            );
        }
    }
    for place in [
        env.tmp.path(),
        env.root.as_path(),
        hook.path().parent().unwrap(),
    ] {
        assert!(
            !place.join("pwned").exists(),
            "a name was run in {}",
            place.display()
        );
    }
}

/// Secrets read from the environment (`smtp_pass_env`, `webhook_token_env`) leave the daemon's own
/// environment at start, and a reload (SIGHUP), which reads the config again when the variables are gone,
/// keeps sending with them; neither a job nor the hook ever sees them. (That the variable is gone cannot be
/// seen from outside: `/proc/PID/environ` shows the block the process started with, and children get a
/// filtered environment either way; the daemon says it, and the reload proves the value was kept.)
#[test]
fn secrets_from_the_environment_leave_it_at_start_and_survive_a_reload() {
    let smtp = SmtpServer::start();
    let http = HttpServer::start(0);
    let env = TestEnv::local("envsecret");
    let hook_env = env.tmp.path().join("hook-env.txt");
    let env = env
        .job("wrap_cmd: sh -c 'env > job-env.txt' job")
        .behavior("from_email: dirwatcher@example.org")
        .behavior("smtp_host: 127.0.0.1")
        .behavior(&format!("smtp_port: {}", smtp.port))
        .behavior("smtp_user: dw")
        .behavior("smtp_pass_env: DW_SMTP_SECRET")
        .behavior("smtp_use_tls: false")
        .notify("email_via: smtp")
        .notify("email_to: [ops@example.org]")
        .notify(&format!("webhooks: [\"http://127.0.0.1:{}/h\"]", http.port))
        .notify("webhook_token_env: DW_TOKEN_SECRET")
        .notify("events: [completed]")
        .notify(&format!(
            "command: [\"sh\", \"-c\", \"env >> {}\"]",
            hook_env.display()
        ));
    let secrets: [(&str, &std::ffi::OsStr); 2] = [
        ("DW_SMTP_SECRET", "smtp-s3cret-value".as_ref()),
        ("DW_TOKEN_SECRET", "t0ken-s3cret-value".as_ref()),
    ];
    let d = env.start_env(&[], &secrets);
    for (name, _) in secrets {
        d.wait_log(
            &format!("`{name}` and removed the variable from this process's environment"),
            DEADLINE,
        );
    }
    let told = |n: usize| {
        wait_for(DEADLINE, &format!("{n} mail(s) and post(s)"), || {
            (smtp.mails().len() >= n && http.posts().len() >= n).then_some(())
        })
    };
    let first = env.ready_dir("before-reload");
    env.wait_final(&first, DEADLINE);
    told(1);

    d.signal(libc::SIGHUP);
    d.wait_log("config reloaded", DEADLINE);
    let second = env.ready_dir("after-reload");
    env.wait_final(&second, DEADLINE);
    told(2);
    wait_for(DEADLINE, "the hook to run twice", || {
        (std::fs::read_to_string(&hook_env)
            .unwrap_or_default()
            .matches("PWD=")
            .count()
            >= 2)
            .then_some(())
    });

    let log = d.log();
    assert!(!log.contains("reload refused"), "{log}");
    for m in smtp.mails() {
        assert_eq!(m.auth.as_deref(), Some("\0dw\0smtp-s3cret-value"), "{m:?}");
    }
    for p in http.posts() {
        assert!(
            header(&p.head, "Authorization") == Some("Bearer t0ken-s3cret-value"),
            "{}",
            p.head
        );
    }
    let hook = std::fs::read_to_string(&hook_env).unwrap();
    for dir in [&first, &second] {
        let job = std::fs::read_to_string(dir.join("job-env.txt")).unwrap();
        assert!(job.contains("WATCH_DIR="), "{job}");
        for (name, value) in secrets {
            let value = value.to_str().unwrap();
            for (who, seen) in [("the job", &job), ("the hook", &hook)] {
                assert!(
                    !seen.contains(value) && !seen.contains(name),
                    "{name} reached {who}:\n{seen}"
                );
            }
            assert!(!log.contains(value), "the log shows {name}'s value:\n{log}");
        }
    }
}

/// Under systemd with `LoadCredential=`, the unit's credential (`$CREDENTIALS_DIRECTORY/webhook_token`,
/// `…/smtp_pass`) is the secret, preferred to the file the config names; the hook is not told where the
/// credentials are. An operator's `check-config` outside the unit, with no password in the config, says
/// the service must get it as its credential and goes on.
#[test]
fn the_units_credential_is_preferred_to_the_configs_secret_file() {
    let smtp = SmtpServer::start();
    let http = HttpServer::start(0);
    let env = TestEnv::local("credential");
    let hook_env = env.tmp.path().join("hook-env.txt");
    let creds = env.tmp.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("smtp_pass"), "cred-pa55\n").unwrap();
    std::fs::write(creds.join("webhook_token"), "cred-t0ken\n").unwrap();
    let file = env.tmp.path().join("token");
    std::fs::write(&file, "file-t0ken\n").unwrap();
    let env = env
        .behavior("from_email: dirwatcher@example.org")
        .behavior("smtp_host: 127.0.0.1")
        .behavior(&format!("smtp_port: {}", smtp.port))
        .behavior("smtp_user: dw")
        .behavior("smtp_use_tls: false")
        .notify("email_via: smtp")
        .notify("email_to: [ops@example.org]")
        .notify(&format!("webhooks: [\"http://127.0.0.1:{}/h\"]", http.port))
        .notify(&format!("webhook_token_file: {}", file.display()))
        .notify("events: [completed]")
        .notify(&format!(
            "command: [\"sh\", \"-c\", \"env > {}\"]",
            hook_env.display()
        ))
        .job("wrap_cmd: true");

    // The operator's view: no credentials here, no password in the config.
    let cfg = env.write_config();
    let o = std::process::Command::new(BIN)
        .args(["check-config", "--quiet", "--config"])
        .arg(&cfg)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("must get it as its credential `smtp_pass`"),
        "{err}"
    );
    // ExecReload's view: the unit's credentials are there.
    let o = std::process::Command::new(BIN)
        .args(["check-config", "--quiet", "--secrets", "--config"])
        .arg(&cfg)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.is_empty(), "{err}");

    let d = env.start_env(&[], &[("CREDENTIALS_DIRECTORY", creds.as_os_str())]);
    let dir = env.ready_dir("credited");
    env.wait_final(&dir, DEADLINE);
    wait_for(DEADLINE, "a mail, a post and the hook", || {
        (!smtp.mails().is_empty() && !http.posts().is_empty() && hook_env.exists()).then_some(())
    });
    assert_eq!(
        smtp.mails()[0].auth.as_deref(),
        Some("\0dw\0cred-pa55"),
        "the credential is the password"
    );
    let head = &http.posts()[0].head;
    assert!(
        header(head, "Authorization") == Some("Bearer cred-t0ken"),
        "{head}"
    );
    let hook = std::fs::read_to_string(&hook_env).unwrap();
    assert!(!hook.contains("CREDENTIALS_DIRECTORY"), "{hook}");
    drop(d);
}
