//! The named readiness rule sets (`watch.ready_preset`): what each instrument family or copy tool writes
//! when it is done, the words of success and of failure in its status file, and where that knowledge comes
//! from (docs/instruments.md has the long form and the sources).
//!
//! Owns: the presets, their markers, content checks and temporaries, and where each comes from.
//! Must never: look at a directory or read the clock (the scan gathers, `readiness::decide` decides).

use super::patterns::RSYNC_TEMPORARY;
use super::readiness::ContentCheck;

/// A named rule set for a common instrument family or transfer tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Illumina instruments whose control software writes `CopyComplete.txt` when the run folder is
    /// completely copied (NovaSeq 6000, NovaSeq X, NextSeq 1000/2000, MiSeq i100).
    Illumina,
    /// Illumina instruments that write `RTAComplete.txt` and no `CopyComplete.txt` (MiSeq, HiSeq,
    /// NextSeq 500/550, MiniSeq).
    IlluminaRta,
    /// Oxford Nanopore MinKNOW output: a run folder, a sample or an experiment.
    Ont,
    /// Copies made with rsync (or WinSCP, or by any tool writing `*.part`/`*.tmp`).
    Rsync,
}

/// The status file Illumina's control software writes at the end of a run (NovaSeq X, NextSeq, MiSeq).
pub const ILLUMINA_STATUS_FILE: &str = "RunCompletionStatus.xml";
/// The words of success in `RunCompletionStatus.xml`: `<RunStatus>RunCompleted` (NovaSeq X),
/// `<CompletionStatus>CompletedAsPlanned` (NextSeq 500/550), `<CompletionStatus>SuccessfullyCompleted`
/// (MiSeq). Anything else in those elements is not success.
pub const ILLUMINA_STATUS_OK: &str = r"<(?:CompletionStatus|RunStatus)>\s*(?:SuccessfullyCompleted|CompletedAsPlanned|RunCompleted)\s*<";
/// A status word in `RunCompletionStatus.xml` (checked only when it is not a word of success): the run
/// ended otherwise — `RunErrored` (NovaSeq X), or a word the preset does not know. Group 1 is the word.
pub const ILLUMINA_STATUS_OTHER: &str = r"<(?:CompletionStatus|RunStatus)>\s*([A-Za-z]+)\s*<";
/// Transfer temporaries: rsync's `.name.XXXXXX`, WinSCP's `*.filepart`, browsers' and tools' `*.part`,
/// `*.tmp`.
pub const TRANSFER_TEMPORARIES: [&str; 4] = [RSYNC_TEMPORARY, "*.filepart", "*.part", "*.tmp"];

/// The markers, content check and ignore patterns of a preset.
pub type PresetRules = (Vec<Vec<String>>, Option<ContentCheck>, Vec<String>);

impl Preset {
    /// Every preset, in the order `check-config` and the README list them.
    pub const ALL: &'static [Preset] = &[
        Preset::Illumina,
        Preset::IlluminaRta,
        Preset::Ont,
        Preset::Rsync,
    ];

    /// The preset named `name` (as written in the config).
    pub fn parse(name: &str) -> Option<Preset> {
        Preset::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// Its name in the config.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Illumina => "illumina",
            Preset::IlluminaRta => "illumina-rta",
            Preset::Ont => "ont",
            Preset::Rsync => "rsync",
        }
    }

    /// Where its rules come from, in one line (`check-config` prints it beside the expanded keys;
    /// docs/instruments.md has the long form).
    pub fn source(self) -> &'static str {
        match self {
            Preset::Illumina => {
                "NovaSeq 6000/X, NextSeq 1000/2000 write CopyComplete.txt when the copy ends; status words of \
                 RunCompletionStatus.xml as in miso-lims/runscanner DefaultIllumina.java; docs/instruments.md"
            }
            Preset::IlluminaRta => {
                "MiSeq, HiSeq, NextSeq 500/550 write RTAComplete.txt and no CopyComplete.txt; status words as \
                 in miso-lims/runscanner DefaultIllumina.java; docs/instruments.md"
            }
            Preset::Ont => {
                "MinKNOW writes <group>/<sample>/<run>/final_summary_*.txt once all files of a run are written \
                 (nanoporetech.github.io/ont-output-specifications, minknow/output_structure); docs/instruments.md"
            }
            Preset::Rsync => {
                "rsync writes .<name>.XXXXXX (mkstemp: 6 of A-Z a-z 0-9) and renames it when the file is \
                 complete; WinSCP *.filepart; docs/instruments.md"
            }
        }
    }

    /// What releases a directory that waits for `missing` under this preset, when the preset knows more
    /// than the marker's name (for `explain`).
    pub fn hint(self, missing: &[String]) -> Option<&'static str> {
        let waits_for = |m: &str| missing.iter().any(|x| x.ends_with(m));
        match self {
            Preset::Illumina if waits_for("CopyComplete.txt") => Some(
                "the instrument writes `CopyComplete.txt` once the run folder is completely copied, often \
                 hours after `RTAComplete.txt`; an instrument that never writes it (MiSeq, HiSeq, NextSeq \
                 500/550) needs `ready_preset: illumina-rta`",
            ),
            Preset::Ont => Some(
                "MinKNOW writes `final_summary_*.txt` in each run folder when that run ends; every run folder \
                 below the directory needs its own",
            ),
            _ => None,
        }
    }

    /// Markers (alternatives), content check and ignore patterns of the preset. `marker` is
    /// `signal_filename`, for the presets that only add to it.
    ///
    /// - `illumina`: `CopyComplete.txt` (written after everything else, RTAComplete.txt and
    ///   RunCompletionStatus.xml included); a `RunCompletionStatus.xml` that is present must say success.
    /// - `illumina-rta`: `RTAComplete.txt`; a present `RunCompletionStatus.xml` must say success.
    /// - `ont`: `final_summary_*.txt` in the directory (a run folder), in each run folder of a sample
    ///   (`*/final_summary_*.txt`) or of an experiment (`*/*/final_summary_*.txt`).
    /// - `rsync`: `signal_filename`, held back while transfer temporaries are present.
    pub fn rules(self, marker: &str) -> PresetRules {
        let s = |v: &[&str]| v.iter().map(|m| m.to_string()).collect::<Vec<_>>();
        match self {
            Preset::Illumina => (
                vec![s(&["CopyComplete.txt"])],
                Some(illumina_status()),
                Vec::new(),
            ),
            Preset::IlluminaRta => (
                vec![s(&["RTAComplete.txt"])],
                Some(illumina_status()),
                Vec::new(),
            ),
            Preset::Ont => (
                vec![
                    s(&["final_summary_*.txt"]),
                    s(&["*/final_summary_*.txt"]),
                    s(&["*/*/final_summary_*.txt"]),
                ],
                None,
                Vec::new(),
            ),
            Preset::Rsync => (
                vec![vec![marker.to_string()]],
                None,
                s(&TRANSFER_TEMPORARIES),
            ),
        }
    }
}

/// The content check of both Illumina presets.
fn illumina_status() -> ContentCheck {
    ContentCheck {
        file: ILLUMINA_STATUS_FILE.into(),
        pattern: regex::Regex::new(ILLUMINA_STATUS_OK).expect("a valid pattern"),
        other: Some(regex::Regex::new(ILLUMINA_STATUS_OTHER).expect("a valid pattern")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_has_a_name_that_parses_back_and_a_source() {
        for p in Preset::ALL {
            assert_eq!(Preset::parse(p.name()), Some(*p));
            assert!(p.source().contains("docs/instruments.md"), "{p:?}");
        }
        assert_eq!(Preset::parse("Illumina"), None);
    }

    #[test]
    fn the_illumina_words_of_success_are_those_each_family_writes() {
        let ok = regex::Regex::new(ILLUMINA_STATUS_OK).unwrap();
        let other = regex::Regex::new(ILLUMINA_STATUS_OTHER).unwrap();
        for good in [
            "<RunStatus>RunCompleted</RunStatus>",
            "<CompletionStatus>CompletedAsPlanned</CompletionStatus>",
            "<CompletionStatus>SuccessfullyCompleted</CompletionStatus>",
        ] {
            assert!(ok.is_match(good), "{good}");
        }
        for bad in [
            "<RunStatus>RunErrored</RunStatus>",
            "<CompletionStatus>ExceptionEndedEarly</CompletionStatus>",
            "<ErrorDescription>RunCompleted</ErrorDescription>",
        ] {
            assert!(!ok.is_match(bad), "{bad}");
        }
        let word = |t: &str| other.captures(t).map(|c| c[1].to_string());
        assert_eq!(
            word("<RunStatus>RunErrored</RunStatus>").as_deref(),
            Some("RunErrored")
        );
    }
}
