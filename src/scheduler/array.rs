//! Job arrays (`job.array_max`): what one `sbatch --array` submits for many directories — the map of task
//! index → directory written beside the root's job output, and the line each task runs.
//!
//! Owns: the map's text (a shell fragment: `case` on `SLURM_ARRAY_TASK_ID`, each directory shell-quoted as
//! one word with the inode recorded for it) and the task's wrapper line, which reads its directory from the
//! map, refuses one that is no longer the directory recorded (another inode), and then runs `wrap_cmd`
//! exactly as a single job would: `WATCH_DIR` set, the directory as its one last argument, inside it with
//! `job.chdir_to_subdir`. Must never: touch the ledger, or run anything.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::shell_quote;

/// Everything needed to submit one array: task `i` is for `tasks[i]`.
#[derive(Debug, Clone)]
pub struct ArraySpec {
    /// The array's submission key (`--comment`), shared by its tasks: a lost answer is found by it.
    pub key: String,
    /// The array's job name, shared by its tasks.
    pub job_name: String,
    /// Per task index: the directory's absolute path and its inode as recorded.
    pub tasks: Vec<(PathBuf, u64)>,
    /// `%N`: at most this many tasks at once.
    pub throttle: Option<u32>,
}

/// Where the maps live, relative to the root (beside the job output, in the daemon's own folder).
pub const MAP_FOLDER: &str = ".dirwatcher/arrays";

/// Exit status of a task whose directory is not the one recorded (or cannot be entered): the job script
/// does not run.
pub const REFUSED_EXIT: u8 = 97;

/// The map's path for the array `key` under `root`.
pub fn map_path(root: &Path, key: &str) -> PathBuf {
    root.join(MAP_FOLDER).join(format!("{key}.sh"))
}

/// The map: a shell fragment that sets `dw_dir` and `dw_ino` for the task `SLURM_ARRAY_TASK_ID`.
pub fn map_text(spec: &ArraySpec) -> Vec<u8> {
    let mut s = format!(
        "# dirwatcher job array {}: task index -> directory, and its inode when it was submitted\n\
         case \"${{SLURM_ARRAY_TASK_ID-}}\" in\n",
        spec.key
    )
    .into_bytes();
    for (i, (dir, ino)) in spec.tasks.iter().enumerate() {
        s.extend_from_slice(format!("{i}) dw_dir=").as_bytes());
        s.extend_from_slice(shell_quote(dir.as_os_str()).as_bytes());
        s.extend_from_slice(format!(" dw_ino={ino} ;;\n").as_bytes());
    }
    s.extend_from_slice(
        format!(
            "*) echo \"dirwatcher: task ${{SLURM_ARRAY_TASK_ID-?}} is not in the map of array {}\" >&2; exit {REFUSED_EXIT} ;;\nesac\n",
            spec.key
        )
        .as_bytes(),
    );
    s
}

/// The line every task of an array runs (`sbatch --wrap`, so `/bin/sh`): read the map, check the
/// directory, then `<wrap_cmd> <dir>` with `WATCH_DIR=<dir>`.
pub fn task_line(wrap_cmd: &str, map: &Path, chdir: bool) -> OsString {
    let refuse = format!(
        "{{ echo \"dirwatcher: refusing $dw_dir: it is not the directory that was submitted (inode $dw_now, recorded $dw_ino)\" >&2; exit {REFUSED_EXIT}; }}"
    );
    let mut s = OsString::from(". ");
    s.push(shell_quote(map.as_os_str()));
    s.push(format!(" || exit {REFUSED_EXIT}\n"));
    if chdir {
        s.push(format!(
            "cd -- \"$dw_dir\" || exit {REFUSED_EXIT}\ndw_now=$(stat -c %i .)\n"
        ));
    } else {
        s.push("dw_now=$(stat -c %i -- \"$dw_dir\")\n");
    }
    s.push(format!("[ \"$dw_now\" = \"$dw_ino\" ] || {refuse}\n"));
    s.push("WATCH_DIR=$dw_dir; export WATCH_DIR\n");
    s.push(OsStr::from_bytes(wrap_cmd.as_bytes()));
    s.push(" \"$dw_dir\"");
    s
}

/// The job id of task `task` of the array `array_id` (`ID` or `ID;CLUSTER`, as sbatch answered):
/// `ID_TASK` (`ID_TASK;CLUSTER`), as squeue and sacct name the task.
pub fn task_job_id(array_id: &str, task: u32) -> String {
    match array_id.split_once(';') {
        Some((id, cluster)) => format!("{id}_{task};{cluster}"),
        None => format!("{array_id}_{task}"),
    }
}

/// `job.output` for an array: `%j` (a task's own job id) becomes `%A_%a` (the array's id and the task
/// index), so each task's file is named by the id the logs and `status` give it (`1234_5`).
pub fn array_output(output: &str) -> String {
    output.replace("%j", "%A_%a")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The map and the task line, run by `sh` as Slurm runs them: each task reaches its own directory as
    /// one argument, whatever its name holds, and a directory replaced since it was recorded is refused.
    #[test]
    fn each_task_runs_the_command_for_its_own_directory_and_refuses_a_replaced_one() {
        let t = tempfile::tempdir().unwrap();
        let names = ["plain", "with space", "quote'\"$(x)", "new\nline"];
        let mut tasks = Vec::new();
        for n in names {
            let d = t.path().join(n);
            std::fs::create_dir(&d).unwrap();
            let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&d).unwrap());
            tasks.push((d, ino));
        }
        let spec = ArraySpec {
            key: "dw-k-a1-1".into(),
            job_name: "dw-array".into(),
            tasks: tasks.clone(),
            throttle: None,
        };
        let map = t.path().join("map.sh");
        std::fs::write(&map, map_text(&spec)).unwrap();
        for chdir in [true, false] {
            let line = task_line("printf '%s|%s|%s' \"$PWD\" \"$WATCH_DIR\"", &map, chdir);
            for (i, (dir, _)) in tasks.iter().enumerate() {
                let out = Command::new("sh")
                    .arg("-c")
                    .arg(&line)
                    .env("SLURM_ARRAY_TASK_ID", i.to_string())
                    .current_dir(t.path())
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                let got = out.stdout;
                let d = dir.as_os_str().as_bytes();
                let cwd = if chdir {
                    d
                } else {
                    t.path().as_os_str().as_bytes()
                };
                let want = [cwd, b"|", d, b"|", d].concat();
                assert_eq!(got, want, "task {i}, chdir {chdir}");
            }
            // Replaced: same path, another directory.
            std::fs::rename(&tasks[0].0, t.path().join("old")).unwrap();
            std::fs::create_dir(&tasks[0].0).unwrap();
            let out = Command::new("sh")
                .arg("-c")
                .arg(&line)
                .env("SLURM_ARRAY_TASK_ID", "0")
                .current_dir(t.path())
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(i32::from(REFUSED_EXIT)), "{out:?}");
            assert!(out.stdout.is_empty(), "the command did not run");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("is not the directory that was submitted"),
                "{err}"
            );
            std::fs::remove_dir(&tasks[0].0).unwrap();
            std::fs::rename(t.path().join("old"), &tasks[0].0).unwrap();
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(task_line("true", &map, true))
            .env("SLURM_ARRAY_TASK_ID", "9")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(i32::from(REFUSED_EXIT)));
    }
}
