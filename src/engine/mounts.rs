//! What the root's mount means for settling: attribute caching and whether `flock` is seen by other nodes,
//! from the text of `/proc/self/mountinfo`.
//!
//! Owns: parsing mountinfo lines, finding the mount a path is on, and the facts that matter here — how
//! long the client may cache attributes (NFS `actimeo`, `acregmax`, `acdirmax`, `noac`), and whether
//! `flock` is answered locally (Lustre `localflock`, NFS `nolock` / `local_lock=all|flock`), which makes a
//! writer on another node invisible to the lock probe. Must never: read the file (the caller passes its
//! text) or decide what to do about it (the caller warns, and reports the probe as "cannot check").

use std::path::{Path, PathBuf};
use std::time::Duration;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted (octal escapes such as `\040` decoded).
    pub mount_point: PathBuf,
    /// The file system type (`nfs4`, `lustre`, `ext4`).
    pub fstype: String,
    /// Where it comes from (`server:/export`).
    pub source: String,
    /// The per-mount options, then the super-block options (where NFS lists `acregmax=` and friends).
    pub options: Vec<String>,
}

impl Mount {
    /// The value of `name=value`, if the option is there.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find_map(|o| o.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
    }

    /// Whether the bare option `name` is there.
    pub fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|o| o == name)
    }
}

/// Decodes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of `/proc/self/mountinfo`; lines that do not parse are skipped.
///
/// A line: `id parent major:minor root mount_point options [optional fields…] - fstype source super_options`.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 3 {
                return None;
            }
            let mut options: Vec<String> = l[5].split(',').map(String::from).collect();
            options.extend(r[2].split(',').map(String::from));
            Some(Mount {
                mount_point: PathBuf::from(unescape(l[4])),
                fstype: r[0].to_string(),
                source: unescape(r[1]),
                options,
            })
        })
        .collect()
}

/// The mount `path` (absolute, symlinks resolved) is on: the longest mount point that contains it; of
/// two at the same place, the later one (it is mounted over the earlier).
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if path.starts_with(&m.mount_point)
            && best
                .is_none_or(|b| m.mount_point.as_os_str().len() >= b.mount_point.as_os_str().len())
        {
            best = Some(m);
        }
    }
    best
}

/// What the mount means for settling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFacts {
    /// The file system type.
    pub fstype: String,
    /// The longest time the client may show stale attributes (size, mtime, a directory's entries);
    /// `None` when the file system does not cache them on the client as far as its options say.
    pub attr_cache: Option<Duration>,
    /// Why `flock` is answered on this node only, when it is (the option that says so).
    pub flock_local: Option<String>,
}

/// NFS client defaults (nfs(5)): `acregmax=60`, `acdirmax=60` seconds.
const NFS_AC_MAX_DEFAULT: u64 = 60;

/// The facts of one mount.
pub fn facts(m: &Mount) -> MountFacts {
    let secs = |name: &str| m.option(name).and_then(|v| v.parse::<u64>().ok());
    let nfs = m.fstype == "nfs" || m.fstype == "nfs4";
    let attr_cache = if nfs {
        if m.flag("noac") {
            None
        } else {
            let timeo = secs("actimeo");
            let reg = secs("acregmax").or(timeo).unwrap_or(NFS_AC_MAX_DEFAULT);
            let dir = secs("acdirmax").or(timeo).unwrap_or(NFS_AC_MAX_DEFAULT);
            Some(Duration::from_secs(reg.max(dir))).filter(|d| !d.is_zero())
        }
    } else {
        None
    };
    let flock_local = if nfs {
        if m.flag("nolock") {
            Some("nolock".to_string())
        } else {
            match m.option("local_lock") {
                Some(v @ ("all" | "flock")) => Some(format!("local_lock={v}")),
                _ => None,
            }
        }
    } else if m.fstype == "lustre" && m.flag("localflock") {
        Some("localflock".to_string())
    } else {
        None
    };
    MountFacts {
        fstype: m.fstype.clone(),
        attr_cache,
        flock_local,
    }
}

/// What an operator must hear about the root's mount (lowercase; each names the keys and the fix).
/// `settle` is `stability_interval_sec` × `stability_checks`.
pub fn warnings(f: &MountFacts, mount_point: &Path, settle: Duration) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(cache) = f.attr_cache
        && settle < cache
    {
        out.push(format!(
            "the root is on {} (`{}`), whose client may show a file's size and mtime up to {}s old \
             (attribute cache: `actimeo`/`acregmax`/`acdirmax`), longer than `watch.stability_interval_sec` × \
             `watch.stability_checks` = {}s: a ready-file still being written can look stable; raise \
             `stability_interval_sec` so the product is at least {}s, set `watch.quiet_sec` to at least that, \
             or mount with a shorter `actimeo`",
            f.fstype,
            mount_point.display(),
            cache.as_secs(),
            trim(settle.as_secs_f64()),
            cache.as_secs()
        ));
    }
    if let Some(why) = &f.flock_local {
        out.push(format!(
            "the root is on {} (`{}`) mounted with `{why}`: flock is answered on this node only, so a writer \
             on another node that locks its ready-file is invisible; the lock probe reports \"cannot check\" \
             and stability alone decides (write the ready-file last, or mount with working locks)",
            f.fstype,
            mount_point.display()
        ));
    }
    out
}

fn trim(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines: a Debian 12 NFS 4.2 client, an NFSv3 mount with nolock, an HPC site's NFS with
    // actimeo, Lustre with localflock, and the local root.
    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
95 22 0:52 / /data/incoming rw,relatime shared:50 - nfs4 fs1.example.org:/export/incoming rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.5,local_lock=none,addr=10.0.0.2
96 22 0:53 / /data/seq rw,relatime shared:51 - nfs 10.0.0.3:/seq rw,vers=3,rsize=65536,wsize=65536,namlen=255,acregmin=3,acregmax=60,acdirmin=30,acdirmax=90,hard,nolock,proto=tcp,timeo=600,retrans=2,sec=sys,mountaddr=10.0.0.3,mountvers=3,mountport=20048,mountproto=udp,local_lock=all,addr=10.0.0.3
97 22 0:54 / /scratch rw,relatime shared:52 - nfs4 hpc:/scratch rw,vers=4.1,rsize=1048576,wsize=1048576,namlen=255,acregmin=5,acregmax=5,acdirmin=5,acdirmax=5,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.5,local_lock=none,addr=10.0.0.9
98 22 0:55 / /lustre/fs1 rw,relatime shared:53 - lustre 10.1.0.1@o2ib:/fs1 rw,localflock,lazystatfs
99 95 0:52 /sub /data/incoming/with\\040space rw,relatime shared:50 - nfs4 fs1.example.org:/export/incoming rw,vers=4.2,noac,local_lock=none,addr=10.0.0.2
";

    fn at(p: &str) -> MountFacts {
        let m = parse(MOUNTINFO);
        facts(mount_of(&m, Path::new(p)).expect("a mount"))
    }

    #[test]
    fn parses_real_lines() {
        let m = parse(MOUNTINFO);
        assert_eq!(m.len(), 6);
        assert_eq!(m[1].fstype, "nfs4");
        assert_eq!(m[1].source, "fs1.example.org:/export/incoming");
        assert_eq!(m[2].option("acdirmax"), Some("90"));
        assert!(m[2].flag("nolock"));
        assert_eq!(m[5].mount_point, Path::new("/data/incoming/with space"));
        assert!(parse("garbage\n").is_empty());
    }

    #[test]
    fn finds_the_innermost_mount() {
        let m = parse(MOUNTINFO);
        assert_eq!(
            mount_of(&m, Path::new("/data/incoming/x"))
                .unwrap()
                .mount_point,
            Path::new("/data/incoming")
        );
        assert_eq!(mount_of(&m, Path::new("/home/u")).unwrap().fstype, "ext4");
        assert_eq!(
            mount_of(&m, Path::new("/data/incoming/with space/a"))
                .unwrap()
                .mount_point,
            Path::new("/data/incoming/with space")
        );
        // `/data/incomingX` is not below `/data/incoming`.
        assert_eq!(
            mount_of(&m, Path::new("/data/incomingX")).unwrap().fstype,
            "ext4"
        );
    }

    #[test]
    fn nfs_attribute_cache_and_local_locks() {
        let v42 = at("/data/incoming/run1");
        assert_eq!(
            v42.attr_cache,
            Some(Duration::from_secs(60)),
            "nfs(5) defaults"
        );
        assert_eq!(
            v42.flock_local, None,
            "local_lock=none: flock reaches the server"
        );
        let v3 = at("/data/seq");
        assert_eq!(v3.attr_cache, Some(Duration::from_secs(90)), "acdirmax=90");
        assert_eq!(v3.flock_local.as_deref(), Some("nolock"));
        assert_eq!(at("/scratch").attr_cache, Some(Duration::from_secs(5)));
        assert_eq!(at("/data/incoming/with space").attr_cache, None, "noac");
        let lustre = at("/lustre/fs1/run");
        assert_eq!(
            (lustre.attr_cache, lustre.flock_local.as_deref()),
            (None, Some("localflock"))
        );
        assert_eq!(
            at("/"),
            MountFacts {
                fstype: "ext4".into(),
                attr_cache: None,
                flock_local: None
            }
        );
    }

    #[test]
    fn warns_when_settling_is_shorter_than_the_cache_and_when_flock_is_local() {
        let w = warnings(
            &at("/data/seq"),
            Path::new("/data/seq"),
            Duration::from_secs(2),
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("90s") && w[0].contains("stability_interval_sec"),
            "{}",
            w[0]
        );
        assert!(
            w[1].contains("`nolock`") && w[1].contains("cannot check"),
            "{}",
            w[1]
        );
        assert!(
            warnings(
                &at("/scratch"),
                Path::new("/scratch"),
                Duration::from_secs(10)
            )
            .is_empty()
        );
        let f = at("/data/incoming/local_lock");
        assert!(warnings(&f, Path::new("/data/incoming"), Duration::from_secs(60)).is_empty());
        assert_eq!(
            facts(&parse("1 1 0:1 / /m rw - nfs h:/e rw,local_lock=flock\n")[0])
                .flock_local
                .as_deref(),
            Some("local_lock=flock")
        );
    }
}
