//! nginx in front of a test rill, from the example config in `deploy/`
//! (edited by the test where it wants a misconfiguration), on a free
//! loopback port. Stopped, and its files removed, on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running nginx.
pub struct Nginx {
    child: Child,
    /// Its prefix directory: config, logs, temp files.
    pub dir: PathBuf,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL would orphan them.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Nginx {
    /// Starts nginx with `deploy/nginx-rill.conf`, passed through `edit`,
    /// proxying to `upstream` (`127.0.0.1:PORT`); returns once it answers.
    pub async fn start(upstream: &str, edit: impl Fn(String) -> String) -> Nginx {
        let n: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("rill-nginx-{n:x}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = free_port();
        let site = std::fs::read_to_string(repo("deploy/nginx-rill.conf"))
            .expect("deploy/nginx-rill.conf");
        assert!(site.contains("server 127.0.0.1:8080;") && site.contains("listen 80;"));
        let site = edit(site)
            .replace("127.0.0.1:8080", upstream)
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        std::fs::write(dir.join("rill.conf"), site).expect("write site");
        let d = dir.display();
        let main = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               include {d}/rill.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx must be installed (scripts/test installs it)");
        let nginx = Nginx {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            let url = format!("{}/healthz", nginx.base);
            if client.get(url).send().await.is_ok() {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nginx did not start; see {}", nginx.dir.display());
    }
}
