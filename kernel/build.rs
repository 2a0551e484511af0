//! Records the git commit llem was built from (`LLEM_GIT_COMMIT`, empty when
//! not built from a git checkout) for every run's environment record.

fn main() {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    let value = if dirty && !commit.is_empty() {
        format!("{commit}-dirty")
    } else {
        commit
    };
    println!("cargo:rustc-env=LLEM_GIT_COMMIT={value}");
    // Rebuilt when HEAD moves (a new commit or checkout).
    if let Ok(out) = std::process::Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
    {
        let git_dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !git_dir.is_empty() {
            println!("cargo:rerun-if-changed={git_dir}/HEAD");
            println!("cargo:rerun-if-changed={git_dir}/index");
        }
    }
}
