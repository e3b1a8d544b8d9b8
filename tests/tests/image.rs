//! The container image `scripts/image.sh` builds with buildah: unpacked with umoci and run from its
//! root filesystem as the image's user (`chroot --userspec`), so the binaries must find every
//! library they link inside the image, and its config must be what the chart expects. Uses the
//! binaries `cargo build --workspace --bins` left next to this test (target/<profile>), never a
//! release build. Needs root (chroot) and buildah/skopeo/umoci (scripts/install/image.sh).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const UID: &str = "10001";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// target/<profile> of this test binary (target/<profile>/deps/<test>), which follows
/// CARGO_TARGET_DIR because cargo put the test there.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One blocking HTTP/1.0 GET: the status line, or None while nothing listens yet.
fn get_status(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.lines().next().map(str::to_owned)
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn image_runs_from_its_root_filesystem_as_its_user() {
    assert!(
        run(Command::new("id").arg("-u")).trim() == "0",
        "the image test needs root for chroot (CI runs as root): run it as root"
    );
    for tool in ["buildah", "skopeo", "umoci"] {
        assert!(
            Command::new(tool).arg("--version").output().is_ok(),
            "{tool} missing: run scripts/install/image.sh"
        );
    }
    let bin_dir = profile_dir();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("image.tar");
    let digest = run(Command::new(repo_root().join("scripts/image.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(&archive)
        .args(["--tag", "streammachine:test"]));
    let digest = digest.trim();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 7 + 64,
        "digest {digest:?}"
    );

    // The config the chart relies on: numeric non-root user (runAsNonRoot), the entrypoint the
    // chart's `args` (role first) are appended to, the ports it names, the OCI labels.
    let config: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci-archive:{}", archive.display()))))
    .unwrap();
    let c = &config["config"];
    assert_eq!(c["User"], "10001:10001");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/usr/local/bin/streammachine"])
    );
    assert_eq!(c["WorkingDir"], "/data");
    // The chart's and the operator's `command: ["streammachine"]` is resolved on the image's PATH.
    assert!(
        c["Env"].as_array().unwrap().iter().any(|e| e
            .as_str()
            .is_some_and(|e| e.starts_with("PATH=/usr/local/bin"))),
        "PATH: {c}"
    );
    for port in ["8000/tcp", "8001/tcp", "8080/tcp"] {
        assert!(
            c["ExposedPorts"].get(port).is_some(),
            "{port} not exposed: {c}"
        );
    }
    for label in [
        "title",
        "description",
        "licenses",
        "source",
        "version",
        "revision",
    ] {
        let key = format!("org.opencontainers.image.{label}");
        let v = c["Labels"][&key].as_str().unwrap_or_default();
        assert!(!v.is_empty(), "label {key} missing: {c}");
    }

    // Unpacked as the runtime would; chroot then proves nothing is borrowed from the host.
    // umoci reads an OCI layout directory, not the archive.
    let layout = tmp.path().join("layout");
    run(Command::new("skopeo")
        .arg("copy")
        .arg("--quiet")
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("oci:{}:test", layout.display())));
    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:test", layout.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
    assert!(!rootfs.join("bin/sh").exists(), "the image has no shell");
    let data = std::fs::metadata(rootfs.join("data")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&data).to_string(),
        UID,
        "/data owned by the image's user"
    );

    // Resolved on the host's PATH: the child's environment is cleared (the image's, not ours).
    let chroot_bin = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("chroot"))
        .find(|p| p.is_file())
        .expect("chroot (coreutils) on PATH");
    let chroot = |args: &[&str]| {
        let mut cmd = Command::new(&chroot_bin);
        cmd.arg(format!("--userspec={UID}:{UID}"))
            .arg(&rootfs)
            .args(args)
            .env_clear()
            .env("HOME", "/nonexistent");
        cmd
    };
    let help = chroot(&["/usr/local/bin/streammachine-operator", "--help"])
        .output()
        .unwrap();
    assert!(
        help.status.success(),
        "operator --help in the image: {}",
        String::from_utf8_lossy(&help.stderr)
    );

    let port = free_port();
    let admin = free_port();
    let listen = format!("127.0.0.1:{port}");
    let admin_listen = format!("127.0.0.1:{admin}");
    let child = chroot(&[
        "/usr/local/bin/streammachine",
        "standalone",
        "--listen",
        &listen,
        "--admin-listen",
        &admin_listen,
        "--source-password",
        "hackme",
    ])
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let mut child = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = get_status(port, "/healthz") {
            assert!(status.contains(" 200"), "/healthz: {status}");
            break;
        }
        if let Some(exit) = child.0.try_wait().unwrap() {
            panic!("streammachine exited in the image: {exit}");
        }
        assert!(Instant::now() < deadline, "no /healthz within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let size: u64 = std::fs::metadata(&archive).unwrap().len();
    eprintln!("image {digest}: archive {} MiB", size >> 20);
}
