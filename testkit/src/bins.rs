//! The workspace's binaries, built once by the test command (`cargo build --workspace --bins`)
//! and found next to the running test executable: tests never run `cargo build` themselves
//! (under nextest every test is its own process, and a build per test serialises on cargo's
//! lock).

use std::path::{Path, PathBuf};

/// Environment variable naming a directory to take the binaries from instead.
pub const BIN_DIR_ENV: &str = "STREAMMACHINE_BIN_DIR";

/// The binary `name` of this workspace (e.g. `streammachine`); fails the test with the command to
/// run when it has not been built.
#[track_caller]
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let candidates = candidates(
        name,
        &exe,
        std::env::var_os(BIN_DIR_ENV).map(PathBuf::from),
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
    );
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return found.clone();
    }
    let release = profile_of(&exe).is_some_and(|p| p == "release");
    let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    panic!(
        "the `{name}` binary is missing (looked at {}); build it first with `cargo build --workspace --bins{}` \
         (scripts/test.sh does), or point {BIN_DIR_ENV} at a directory holding it",
        looked.join(", "),
        if release { " --release" } else { "" }
    );
}

/// `<profile>` of `target/<profile>/deps/<test>-<hash>`.
fn profile_of(exe: &Path) -> Option<&std::ffi::OsStr> {
    exe.parent()?.parent()?.file_name()
}

/// Where to look, in order: the explicit override, the test's own `target/<profile>`, then
/// `$CARGO_TARGET_DIR/<profile>`.
fn candidates(
    name: &str,
    exe: &Path,
    override_dir: Option<PathBuf>,
    target_dir: Option<PathBuf>,
) -> Vec<PathBuf> {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    if let Some(dir) = override_dir {
        // An explicit choice: never fall back to something else silently.
        return vec![dir.join(file)];
    }
    let mut out = Vec::new();
    // target/<profile>/deps/<test> (cargo test, nextest) or target/<profile>/<test> (examples).
    let deps = exe.parent();
    if let Some(profile_dir) = deps.and_then(Path::parent) {
        out.push(profile_dir.join(&file));
    }
    if let Some(dir) = deps {
        out.push(dir.join(&file));
    }
    if let (Some(target), Some(profile)) = (target_dir, profile_of(exe)) {
        out.push(target.join(profile).join(&file));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_next_to_the_test_then_in_the_target_dir() {
        let exe = Path::new("/w/target/debug/deps/standalone-0123");
        let got = candidates("streammachine", exe, None, Some("/elsewhere".into()));
        assert_eq!(
            got,
            [
                PathBuf::from("/w/target/debug/streammachine"),
                PathBuf::from("/w/target/debug/deps/streammachine"),
                PathBuf::from("/elsewhere/debug/streammachine"),
            ]
        );
    }

    #[test]
    fn the_override_wins_alone() {
        let exe = Path::new("/w/target/release/deps/standalone-0123");
        let got = candidates("streammachine", exe, Some("/bins".into()), None);
        assert_eq!(got, [PathBuf::from("/bins/streammachine")]);
    }

    #[test]
    #[should_panic(expected = "cargo build --workspace --bins")]
    fn a_missing_binary_names_the_command_to_run() {
        binary("surely-not-a-streammachine-binary");
    }
}
