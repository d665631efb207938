//! A PostgreSQL server of a test's own, for faults that stop it.

/// A PostgreSQL server of the test's own (initdb + pg_ctl on a temp dir and
/// a free port), so it can really be stopped and started without touching
/// the machine's server. initdb refuses to run as root: then it runs as the
/// `postgres` user.
pub(crate) struct PrivatePg {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
    as_postgres: bool,
}

impl PrivatePg {
    fn tool(&self, tool: &str) -> std::process::Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.tool(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub(crate) async fn create() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("pg_ctl").exists())
            .max()
            .expect("PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)");
        let uid = std::process::Command::new("id").arg("-u").output().unwrap();
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let dir = tempfile::tempdir().unwrap();
        if as_postgres {
            let out = std::process::Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePg {
            dir,
            port,
            bin,
            as_postgres,
        };
        let data = pg.data();
        tokio::task::block_in_place(|| {
            pg.run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
            )
        });
        pg.start().await;
        pg
    }

    pub(crate) async fn start(&self) {
        let (data, log) = (
            self.data(),
            self.dir.path().join("log").display().to_string(),
        );
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        tokio::task::block_in_place(|| {
            self.run(
                "pg_ctl",
                &[
                    "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "30", "start",
                ],
            )
        });
    }

    pub(crate) async fn stop(&self) {
        let data = self.data();
        tokio::task::block_in_place(|| {
            self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"])
        });
    }

    pub(crate) fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .tool("pg_ctl")
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}
