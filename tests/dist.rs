//! Packaging (issue 13): `hap __generate` writes the man pages and shell completions that
//! scripts/dist installs, from the CLI's own definition, and stays out of the CLI's surface.

use std::process::Command;

fn hap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hap"))
}

#[test]
fn generate_writes_man_pages_and_completions_for_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = hap().arg("__generate").arg(dir.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |rel: &str| {
        std::fs::read_to_string(dir.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    let man = read("man/man1/hap.1");
    assert!(man.contains(".TH hap 1"), "{man}");
    let bash = read("bash-completion/completions/hap");
    let zsh = read("zsh/site-functions/_hap");
    let fish = read("fish/vendor_completions.d/hap.fish");
    assert!(zsh.starts_with("#compdef hap"));
    for sub in ["status", "token", "report", "doctor"] {
        let page = read(&format!("man/man1/hap-{sub}.1"));
        assert!(page.contains(&format!(".TH hap-{sub} 1")), "{page}");
        for (shell, text) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
            assert!(text.contains(sub), "{shell} completion lacks {sub}");
        }
    }
    for text in [&man, &bash, &zsh, &fish] {
        assert!(!text.contains("__generate"));
    }
}

#[test]
fn generate_is_not_part_of_the_cli_surface() {
    let help = hap().arg("--help").output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("__generate"));
    let usage = hap().arg("__generate").output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("usage: hap __generate <SHARE_DIR>"));
}
