//! `dirwatcher __generate`: files derived from the code for packaging: man pages and shell completions
//! from the clap definition, and the package's static units (plain and template) and example config from
//! the renderers.
//!
//! Must never: write outside the directory it is given.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;

use std::io::Write as _;

use crate::cli::{Generate, GenerateArgs};

/// Writes the requested files and lists them on stdout.
pub fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let dir = match &args.what {
        Generate::Man { dir } | Generate::Completions { dir } | Generate::PackageFiles { dir } => {
            dir
        }
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let written: Vec<PathBuf> = match &args.what {
        Generate::Man { dir } => {
            let cmd = crate::cli::Cli::command();
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write man pages to `{}`", dir.display()))?;
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "1"))
                .collect();
            v.sort();
            v
        }
        Generate::Completions { dir } => {
            use clap_complete::Shell;
            let mut v = Vec::new();
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                let mut cmd = crate::cli::Cli::command();
                v.push(
                    clap_complete::generate_to(shell, &mut cmd, "dirwatcher", dir).with_context(
                        || format!("cannot write {shell} completions to `{}`", dir.display()),
                    )?,
                );
            }
            v
        }
        Generate::PackageFiles { dir } => {
            let unit = dir.join("dirwatcher.service");
            let template = dir.join("dirwatcher@.service");
            let example = dir.join("config.example.yaml");
            write(&unit, &super::render::package_unit())?;
            write(&template, &super::render::package_template_unit())?;
            write(&example, &super::render::package_example_config())?;
            vec![unit, template, example]
        }
    };
    for p in written {
        writeln!(crate::out::stdout(), "{}", p.display())?;
    }
    Ok(())
}

fn write(p: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(p, text).with_context(|| format!("cannot write `{}`", p.display()))
}
