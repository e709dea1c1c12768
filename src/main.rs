//! The `dirwatcher` binary: parses the command line, sets up logging, calls the library, maps the result to
//! an exit status (0 fine, 1 runtime error, 2 bad config or usage).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use crossbeam_channel::unbounded;

use dirwatcher::cli::{Cli, Command};
use dirwatcher::config::Config;
use dirwatcher::daemon::{Daemon, Event, Flow, StartError};
use dirwatcher::{install, logging, ops, out, scheduler};

/// Prints to standard output; a reader that went away ends the output quietly (see `dirwatcher::out`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(dirwatcher::out::stdout(), $($t)*).context("cannot write to standard output")?
    }};
}

fn main() -> ExitCode {
    // systemd gives every process it starts SYSTEMD_EXEC_PID; dirwatcher never reads it, and left in the
    // environment it reaches every job through sbatch's default `--export=ALL` (issue 14, D3). The systemd
    // variables the daemon does use (NOTIFY_SOCKET, WATCHDOG_*, …) are kept out of its children instead.
    // SAFETY: the first statement of main, before any other thread exists.
    unsafe { std::env::remove_var("SYSTEMD_EXEC_PID") };
    let cli = Cli::parse();
    if let Command::LocalJob { dir } = &cli.command {
        return ExitCode::from(scheduler::local::run_job(dir) as u8);
    }
    logging::init(cli.log_format, cli.verbose);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            out::error(format_args!("error: {}", logging::error_chain(e.as_ref())));
            ExitCode::from(1)
        }
    }
}

fn load(config: &dirwatcher::cli::ConfigFile) -> Result<Config, ExitCode> {
    load_with(config, Config::load)
}

/// [`load`] for a command that sends nothing: a secret this user cannot read is said and left unread.
fn load_reading(config: &dirwatcher::cli::ConfigFile) -> Result<Config, ExitCode> {
    let cfg = load_with(config, Config::load_without_secrets)?;
    for s in &cfg.unread_secrets {
        out::error(format_args!(
            "note: secret {s}; not needed here, left unread (the service user reads it)"
        ));
    }
    Ok(cfg)
}

fn load_with(
    config: &dirwatcher::cli::ConfigFile,
    loader: fn(&std::path::Path) -> Result<Config, dirwatcher::config::ConfigError>,
) -> Result<Config, ExitCode> {
    let path = config.path();
    if let Some(name) = config.instance()
        && !path.exists()
    {
        let why = dirwatcher::install::missing_instance(name, &path);
        out::error(format_args!("error: {why}"));
        return Err(ExitCode::from(2));
    }
    loader(&path).map_err(|e| {
        out::error(format_args!("error: {e}"));
        ExitCode::from(2)
    })
}

fn load_path(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        out::error(format_args!("error: {e}"));
        ExitCode::from(2)
    })
}

macro_rules! config_or_exit {
    ($path:expr) => {
        match load($path) {
            Ok(c) => c,
            Err(code) => return Ok(code),
        }
    };
    ($path:expr, reading) => {
        match load_reading($path) {
            Ok(c) => c,
            Err(code) => return Ok(code),
        }
    };
}

fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::CheckConfig {
            config,
            slurm,
            quiet,
            secrets,
        } => {
            let cfg = if secrets {
                config_or_exit!(&config)
            } else {
                config_or_exit!(&config, reading)
            };
            if let Some(s) = &cfg.notify.smtp
                && s.user.is_some()
                && s.pass.is_none()
                && cfg.unread_secrets.is_empty()
            {
                if std::env::var_os(dirwatcher::config::credential::DIRECTORY_VAR).is_some() {
                    out::error(
                        "warning: `behavior.smtp_user` is set but no password is (the unit's credential \
                         `smtp_pass`, `smtp_pass_file`, `smtp_pass_env` or `smtp_pass`): the relay will refuse \
                         to log in; give the password, or remove the user for a relay without AUTH",
                    );
                } else {
                    // Outside the unit its credentials are not here: the config may rightly name none.
                    out::error(
                        "note: `behavior.smtp_user` is set and the config gives no password: the service must \
                         get it as its credential `smtp_pass` (`LoadCredential=smtp_pass:FILE` in the unit), \
                         else the relay will refuse to log in (or set `smtp_pass_file`, or remove the user \
                         for a relay without AUTH)",
                    );
                }
            }
            for w in dirwatcher::output_dir::warnings(&cfg) {
                out::error(format_args!("warning: {w}"));
            }
            for w in dirwatcher::scan::mount_warnings(&cfg).0 {
                out::error(format_args!("warning: {w}"));
            }
            if quiet && !slurm {
                return Ok(ExitCode::SUCCESS);
            }
            out!(
                "# effective configuration of {} (valid)\n{}",
                config.path().display(),
                cfg.to_yaml()
            );
            if !slurm {
                return Ok(ExitCode::SUCCESS);
            }
            let (verdict, out, err) = ops::check_slurm(&cfg);
            out!("{out}");
            if !err.is_empty() {
                out::error(err.trim_end());
            }
            Ok(match verdict {
                ops::SlurmCheck::Fine => ExitCode::SUCCESS,
                ops::SlurmCheck::Refused => ExitCode::from(2),
                ops::SlurmCheck::Unknown => ExitCode::from(1),
            })
        }
        Command::Run {
            config,
            once,
            allow_root,
            dry_run,
            catch_up,
        } => {
            let cfg = config_or_exit!(&config);
            if dry_run {
                for line in ops::dry_run(&cfg)? {
                    out!("{line}\n");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(refusal) = install::root_refusal(allow_root) {
                out::error(&refusal);
                return Ok(ExitCode::from(2));
            }
            // Read once, kept for reloads, gone from the environment: nothing this process does later
            // (a library, a child spawned past `process::child_env`) can find it there.
            // SAFETY: single-threaded still: logging (tracing-subscriber's fmt or journald layer) and the
            // config load spawn no thread and run no child; the daemon's threads (dispatch, metrics,
            // signals, child drains) all start after this line, in `run_daemon`.
            let taken = unsafe { dirwatcher::process::take_env_secrets() };
            run_daemon(cfg, once, catch_up, &taken, None)
        }
        Command::Status {
            config,
            json,
            failures,
            state,
            since,
            parsable,
            format,
            dirs,
        } => {
            let cfg = config_or_exit!(&config, reading);
            let q = ops::StatusQuery {
                failures,
                states: state,
                since,
                dirs,
            };
            let listing = parsable || !format.is_empty();
            let q = if listing && !q.lists() {
                // A listing of everything.
                ops::StatusQuery {
                    states: ops::status_words(),
                    ..q
                }
            } else {
                q
            };
            let s = ops::status(&cfg, &q)?;
            if json {
                out!("{}\n", serde_json::to_string_pretty(&s)?);
            } else if listing {
                let rows = s.directories.as_deref().unwrap_or_default();
                out!("{}", ops::render_listing(rows, &format, parsable)?);
            } else {
                out!("{}", ops::render_status(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { config, json, dirs } => {
            let cfg = config_or_exit!(&config, reading);
            let all = ops::explain(&cfg, &dirs)?;
            if json {
                out!("{}\n", serde_json::to_string_pretty(&all)?);
            } else {
                for e in &all {
                    out!("{}", ops::render_explanation(e));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Retry {
            config,
            dirs,
            all_failed,
            state,
        } => {
            let cfg = config_or_exit!(&config);
            let lines = if all_failed {
                ops::retry_all(&cfg, state.as_deref())?
            } else {
                ops::retry(&cfg, &dirs)?
            };
            if all_failed && lines.is_empty() {
                out!(
                    "no failed directories{} to retry\n",
                    state.map(|s| format!(" in state {s}")).unwrap_or_default()
                );
            }
            for line in lines {
                out!("{line}\n");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { config, dirs } => {
            let cfg = config_or_exit!(&config);
            let mut code = ExitCode::SUCCESS;
            for r in ops::cancel(&cfg, &dirs)? {
                match r {
                    Ok(line) => out!("{line}\n"),
                    Err(why) => {
                        out::error(format_args!("error: {why}"));
                        code = ExitCode::from(1);
                    }
                }
            }
            Ok(code)
        }
        Command::Forget { config, dirs } => {
            let cfg = config_or_exit!(&config);
            for line in ops::forget(&cfg, &dirs)? {
                out!("{line}\n");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Recover {
            config,
            from_slurm: _,
            since,
            dry_run,
        } => {
            let cfg = config_or_exit!(&config);
            let now = dirwatcher::time::wall_now();
            let since = match since {
                Some(s) => ops::recover::parse_since(&s, now)?,
                None => now - dirwatcher::recover::START_LOOKBACK.as_millis() as i64,
            };
            let report = {
                let mut bar = Progress::new();
                ops::recover::recover(&cfg, since, dry_run, &mut |w, n, jobs| bar.step(w, n, jobs))?
            };
            out!("{}", ops::recover::render(&report, &cfg.watch.root));
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { dir } => {
            if let Some(w) = install::root_warning() {
                out::error(w);
            }
            let path = ops::prepare_demo(&dir)?;
            let cfg = match load_path(&path) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            out::error(format_args!(
                "\ndirwatcher demo — local executor, no Slurm needed\n  root:    {root}\n  config:  {cfg_path}\n  \
                 A sample directory is dropped into the root in a moment; watch it get picked up below.\n  \
                 Add your own:  mkdir {root}/mine && echo data > {root}/mine/x && touch {root}/mine/_READY\n  \
                 Then:          {exe} status --config {cfg_path}\n  Stop with Ctrl-C.\n",
                root = cfg.watch.root.display(),
                cfg_path = path.display(),
                exe = std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "dirwatcher".into())
            ));
            let root = cfg.watch.root.clone();
            run_daemon(
                cfg,
                false,
                false,
                &[],
                Some(Box::new(move || {
                    std::thread::sleep(Duration::from_secs(1));
                    match ops::drop_demo_sample(&root) {
                        Ok(d) => {
                            tracing::info!("demo: dropped sample directory {}", logging::show(&d))
                        }
                        Err(e) => tracing::warn!("demo: cannot create a sample directory: {e}"),
                    }
                })),
            )
        }
        Command::Install(args) => Ok(install::run_install(&args)),
        Command::Uninstall(args) => Ok(install::run_uninstall(&args)),
        Command::Generate(args) => install::generate::generate(&args).map(|()| ExitCode::SUCCESS),
        Command::LocalJob { .. } => unreachable!("handled before logging is set up"),
    }
}

/// `taken`: the secret variables removed from the environment at start, said once.
fn run_daemon(
    cfg: Config,
    once: bool,
    catch_up: bool,
    taken: &[String],
    side_task: Option<Box<dyn FnOnce() + Send>>,
) -> anyhow::Result<ExitCode> {
    let (tx, rx) = unbounded();
    // An instance's log lines carry its name (journald `INSTANCE=`, JSON `span.instance`); the plain
    // service's stay as they always were.
    let span = logging::instance_span(cfg.behavior.instance.as_ref().map(|n| n.as_str()));
    let _in_span = span.clone().entered();
    for name in taken {
        tracing::info!(
            "read the secret in the environment variable `{name}` and removed the variable from this \
             process's environment (the value is kept for reloads; no child ever gets it)"
        );
    }
    let opts = dirwatcher::daemon::StartOptions {
        catch_up,
        ask_accounting: true,
    };
    let mut daemon = match Daemon::start(cfg, opts) {
        Ok(d) => d,
        // Another daemon runs, or accounting does not answer yet: systemd may try again later.
        Err(
            e @ (StartError::AlreadyRunning { .. }
            | StartError::AccountingUnknown { .. }
            | StartError::Ledger(dirwatcher::ledger::LedgerError::InUse(_))),
        ) => {
            out::error(format_args!("error: {e}"));
            return Ok(ExitCode::from(1));
        }
        // The admin must act (restore, recover, or say --catch-up): 2, which the unit does not restart.
        Err(
            e @ (StartError::LedgerLost { .. }
            | StartError::LedgerReplaced { .. }
            | StartError::Ledger(
                dirwatcher::ledger::LedgerError::OtherRoot { .. }
                | dirwatcher::ledger::LedgerError::Symlink { .. }
                | dirwatcher::ledger::LedgerError::NotAFile(_)
                | dirwatcher::ledger::LedgerError::Newer { .. },
            )),
        ) => {
            out::error(format_args!("error: {e}"));
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e).context("cannot start"),
    };
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .context("cannot install signal handlers")?;
    let sig_tx = tx.clone();
    std::thread::spawn(move || {
        let _in_span = span.entered();
        for s in signals.forever() {
            let ev = if s == signal_hook::consts::SIGHUP {
                Event::Reload
            } else {
                Event::Terminate
            };
            if ev == Event::Terminate {
                tracing::info!(
                    "received {}: finishing the current step, then exiting",
                    if s == signal_hook::consts::SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    }
                );
            }
            if sig_tx.send(ev).is_err() {
                break;
            }
        }
    });
    if let Some(task) = side_task {
        std::thread::spawn(task);
    }
    if once {
        let _: Flow = daemon.cycle(&rx);
    } else {
        daemon.run(&rx);
    }
    drop(tx);
    Ok(ExitCode::SUCCESS)
}

/// `recover`'s progress over the accounting windows: a bar on a terminal, a plain line per window on a pipe.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new() -> Progress {
        use std::io::IsTerminal;
        Progress(std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("sacct {bar:30} day {pos}/{len}  {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        }))
    }

    fn step(&mut self, window: usize, windows: usize, jobs: usize) {
        match &self.0 {
            Some(bar) => {
                bar.set_length(windows as u64);
                bar.set_position(window as u64);
                bar.set_message(format!("{jobs} job(s)"));
                if window == windows {
                    bar.finish_and_clear();
                }
            }
            None => out::error(format_args!(
                "sacct: day {window} of {windows}, {jobs} job(s) so far"
            )),
        }
    }
}
