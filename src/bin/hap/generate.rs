//! `hap __generate <SHARE_DIR>`: the man pages and bash/zsh/fish completions, written from the
//! very clap definition the binary parses with, so they never drift from it. Packaging runs it
//! (scripts/dist writes `dist/c/share/`); it is not a subcommand, so it appears in neither
//! `--help`, the man pages nor the completions.

use clap::CommandFactory;
use clap_complete::Shell;
use std::path::Path;
use std::process::ExitCode;

const ARG: &str = "__generate";

/// `Some(exit code)` when argv is `hap __generate ...`, else `None` (parse as usual).
pub fn from_args() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != ARG {
        return None;
    }
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: hap {ARG} <SHARE_DIR>");
        return Some(ExitCode::from(2));
    };
    match write(Path::new(&dir)) {
        Ok(()) => Some(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("hap {ARG}: {e}");
            Some(ExitCode::from(1))
        }
    }
}

/// The usual places under `$PREFIX/share`, where man(1) and each shell look by default.
fn write(share: &Path) -> std::io::Result<()> {
    let man = share.join("man/man1");
    std::fs::create_dir_all(&man)?;
    // hap.1 plus one page per subcommand (hap-status.1, ...), as git and cargo ship theirs.
    clap_mangen::generate_to(crate::Cli::command(), &man)?;
    for (shell, path) in [
        (Shell::Bash, "bash-completion/completions/hap"),
        (Shell::Zsh, "zsh/site-functions/_hap"),
        (Shell::Fish, "fish/vendor_completions.d/hap.fish"),
    ] {
        let path = share.join(path);
        std::fs::create_dir_all(path.parent().expect("a relative path with a parent"))?;
        let mut file = std::fs::File::create(&path)?;
        clap_complete::generate(shell, &mut crate::Cli::command(), "hap", &mut file);
    }
    Ok(())
}
