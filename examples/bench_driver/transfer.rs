//! `bench_driver transfer`: a file of `--mib` MiB (random bytes, on tmpfs where there is
//! one) fetched from one servant by another with `/get`, beside socat (one TCP stream:
//! the floor of a copy) and aria2c -x8 from nginx (ranged HTTP over eight connections);
//! then a resume: the downloader killed half way, started again and timed to the end.

use crate::bench_common::*;
use crate::harness::{
    deb_version, free_port, start, start_manager, wait_exit, wait_for_line, wait_listening, which,
    Ctx, Proc, Res,
};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// Removes the transfer's scratch folder (and its large files) when dropped.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `bytes` of pseudo-random data (xorshift64*), written in 1 MiB blocks.
fn write_random(path: &Path, bytes: u64) -> Res<()> {
    let mut f = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for c in block.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            c.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

/// A servant taking part in a transfer, with its standard output timestamped line by line.
struct FileServant {
    proc: Proc,
    input: ChildStdin,
    lines: Receiver<(String, Instant)>,
    log: PathBuf,
}

impl FileServant {
    fn start(
        ctx: &Ctx,
        name: &str,
        manager: SocketAddr,
        share: Option<&Path>,
        downloads: Option<&Path>,
    ) -> Res<FileServant> {
        let folders = share
            .map(|d| format!("<share>{}</share>", d.display()))
            .unwrap_or_default()
            + &downloads
                .map(|d| format!("<downloads>{}</downloads>", d.display()))
                .unwrap_or_default();
        let conf = ctx.conf(
            &format!("servant-transfer-{name}.xml"),
            &format!(
                "<config><connectionmgr>127.0.0.1</connectionmgr><port>{}</port><name>{name}</name>\
                 <listen>0</listen><bind>127.0.0.1</bind><heartbeat>1</heartbeat>\
                 <maxconnections>64</maxconnections><maxperaddress>64</maxperaddress>{folders}</config>\n",
                manager.port()
            ),
        );
        let log = ctx
            .out
            .join("logs")
            .join(format!("servant-transfer-{name}.log"));
        let mut cmd = Command::new(ctx.bin.join("servant"));
        cmd.arg("--config")
            .arg(conf)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).map_err(|e| e.to_string())?);
        let mut proc = start(cmd).map_err(|e| format!("cannot start servant {name}: {e}"))?;
        let input = proc.child.stdin.take().unwrap();
        let out = proc.child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                let _ = tx.send((line.trim_end().to_owned(), Instant::now()));
                line.clear();
            }
        });
        Ok(FileServant {
            proc,
            input,
            lines,
            log,
        })
    }

    /// Returns when a line containing one of `stops` is printed (which one, the line,
    /// when), or fails on `download of NAME stopped` or after `limit`.
    fn until(&mut self, stops: &[&str], limit: Duration) -> Res<(usize, String, Instant)> {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((l, t)) => {
                    if let Some(i) = stops.iter().position(|s| l.contains(s)) {
                        return Ok((i, l, t));
                    }
                    if l.starts_with("download of ") && l.contains(" stopped") {
                        return Err(format!("genp2p: {l}"));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("genp2p: none of {stops:?} within {limit:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("genp2p: the servant ended before {stops:?}"))
                }
            }
        }
    }

    fn get(&mut self, name: &str) -> Res<Instant> {
        let t0 = Instant::now();
        self.input
            .write_all(format!("/get {name}\n").as_bytes())
            .map_err(|e| format!("writing /get: {e}"))?;
        Ok(t0)
    }
}

/// `(X MiB/s)` in a `downloaded` line.
fn printed_rate(line: &str) -> f64 {
    line.split_once(" (")
        .and_then(|(_, r)| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

struct TransferSetup {
    manager: SocketAddr,
    name: String,
    size: u64,
    scratch: PathBuf,
    sharer_pid: u32,
    seq: usize,
}

impl TransferSetup {
    fn downloads(&self) -> PathBuf {
        self.scratch.join("downloads")
    }

    /// A fresh downloader (empty downloads folder unless `keep`), joined and knowing the
    /// sharer.
    fn downloader(&mut self, ctx: &Ctx, keep: bool) -> Res<(FileServant, Instant)> {
        let dl = self.downloads();
        if !keep {
            let _ = fs::remove_dir_all(&dl);
        }
        fs::create_dir_all(&dl).map_err(|e| e.to_string())?;
        self.seq += 1;
        let name = format!("getter{}", self.seq);
        let t0 = Instant::now();
        let s = FileServant::start(ctx, &name, self.manager, None, Some(&dl))?;
        wait_for_line(&s.log, "peer joined: sharer ", Duration::from_secs(20))
            .ok_or_else(|| format!("{name} did not hear of the sharer within 20 s"))?;
        Ok((s, t0))
    }
}

fn genp2p_transfer(ctx: &Ctx, t: &mut TransferSetup) -> Res<Json> {
    let (mut d, _) = t.downloader(ctx, false)?;
    let sharer0 = cpu_ticks(t.sharer_pid).unwrap_or(0);
    let d0 = cpu_ticks(d.proc.pid()).unwrap_or(0);
    // Where the time goes: the `.NAME.state` record, polled, says when all but the last
    // `workers` (4) pieces were in, and when every piece was; then the whole-file hash.
    let count = t.size.div_ceil(1 << 20) as usize;
    let state = t.downloads().join(format!(".{}.state", t.name));
    let done = format!("downloaded {}:", t.name);
    let t0 = d.get(&t.name)?;
    let end = t0 + Duration::from_secs(600);
    let (mut first_piece, mut bulk, mut all) = (None, None, None);
    let (line, t1) = loop {
        match d.lines.try_recv() {
            Ok((l, t)) if l.contains(&done) => break (l, t),
            Ok((l, _)) if l.starts_with("download of ") && l.contains(" stopped") => {
                return Err(format!("genp2p: {l}"))
            }
            Ok(_) => continue,
            Err(mpsc::TryRecvError::Disconnected) => {
                return Err("genp2p: the downloader ended".into())
            }
            Err(mpsc::TryRecvError::Empty) => {}
        }
        if Instant::now() > end {
            return Err("genp2p: no `downloaded` line within 600 s".into());
        }
        if all.is_none() {
            let n = fs::read(&state)
                .map(|b| b.iter().filter(|&&c| c == b'\n').count().saturating_sub(1))
                .unwrap_or(0);
            let now = Instant::now();
            if n >= 1 && first_piece.is_none() {
                first_piece = Some(now);
            }
            if n + 4 >= count && bulk.is_none() {
                bulk = Some(now);
            }
            if n >= count {
                all = Some(now);
            }
        }
        thread::sleep(Duration::from_micros(500));
    };
    let secs = t1.duration_since(t0).as_secs_f64();
    let since = |t: Option<Instant>| {
        t.map(|t| t.duration_since(t0).as_secs_f64())
            .unwrap_or(f64::NAN)
    };
    let cpu_ms = ((cpu_ticks(t.sharer_pid).unwrap_or(0) - sharer0)
        + (cpu_ticks(d.proc.pid()).unwrap_or(0) - d0)) as f64
        * 1000.0
        / ctx.tck;
    let got = t.downloads().join(&t.name);
    let ok = fs::metadata(&got).map(|m| m.len()).unwrap_or(0) == t.size;
    drop(d);
    let _ = fs::remove_file(&got);
    if !ok {
        return Err(format!("genp2p: {} is not {} bytes", got.display(), t.size));
    }
    Ok(Json::new()
        .num("secs", secs)
        .num("gib_per_s", t.size as f64 / (1u64 << 30) as f64 / secs)
        .num("printed_mib_per_s", printed_rate(&line))
        .num("cpu_ms", cpu_ms)
        .num("first_piece_secs", since(first_piece))
        .num("all_but_4_secs", since(bulk))
        .num("all_pieces_secs", since(all))
        .str("line", &line))
}

fn socat_transfer(t: &TransferSetup) -> Res<Json> {
    let port = free_port()?;
    let src = t.scratch.join("share").join(&t.name);
    let dst = t.scratch.join("socat.out");
    let mut cmd = Command::new("socat");
    cmd.arg("-u")
        .arg(&src)
        .arg(format!("tcp-listen:{port},bind=127.0.0.1,reuseaddr"))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut server = start(cmd).map_err(|e| format!("cannot start socat: {e}"))?;
    if !wait_listening(port, Duration::from_secs(10)) {
        return Err(format!("socat did not listen on 127.0.0.1:{port}"));
    }
    let t0 = Instant::now();
    let mut cmd = Command::new("socat");
    cmd.arg("-u")
        .arg(format!("tcp:127.0.0.1:{port}"))
        .arg(format!("OPEN:{},creat,trunc", dst.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut client = start(cmd).map_err(|e| format!("cannot start socat: {e}"))?;
    let st = wait_exit(&mut client, Duration::from_secs(300)).map_err(|e| format!("socat: {e}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let _ = wait_exit(&mut server, Duration::from_secs(10));
    let ok = st.success() && fs::metadata(&dst).map(|m| m.len()).unwrap_or(0) == t.size;
    let _ = fs::remove_file(&dst);
    if !ok {
        return Err(format!("socat: copy failed ({st})"));
    }
    Ok(Json::new()
        .num("secs", secs)
        .num("gib_per_s", t.size as f64 / (1u64 << 30) as f64 / secs))
}

/// nginx on 127.0.0.1 serving the share folder (Range requests), in the foreground.
fn start_nginx(ctx: &Ctx, t: &TransferSetup) -> Res<(Proc, u16)> {
    let port = free_port()?;
    let prefix = t.scratch.join("nginx");
    fs::create_dir_all(prefix.join("logs")).map_err(|e| e.to_string())?;
    let conf = prefix.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "daemon off; master_process off; worker_processes 1;\n\
             pid {p}/nginx.pid; error_log {p}/logs/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; sendfile on; default_type application/octet-stream;\n\
             client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fastcgi;\n\
             uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n\
             server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n",
            p = prefix.display(),
            root = t.scratch.join("share").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&prefix)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(ctx.log("nginx-transfer.log"));
    let p = start(cmd).map_err(|e| format!("cannot start nginx: {e}"))?;
    if !wait_listening(port, Duration::from_secs(10)) {
        return Err(format!(
            "nginx did not listen on 127.0.0.1:{port} (see logs/nginx-transfer.log)"
        ));
    }
    Ok((p, port))
}

fn aria2c_transfer(ctx: &Ctx, t: &TransferSetup, port: u16, run: usize) -> Res<Json> {
    let dir = t.scratch.join("aria2");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "--no-conf",
        "-x8",
        "-s8",
        "--file-allocation=none",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--disable-ipv6",
        "--summary-interval=0",
        "--console-log-level=warn",
    ])
    .arg("-d")
    .arg(&dir)
    .arg("-o")
    .arg("out")
    .arg(format!("http://127.0.0.1:{port}/{}", t.name))
    .stdin(Stdio::null())
    .stdout(ctx.log(&format!("aria2c-{run}.log")))
    .stderr(Stdio::null());
    let t0 = Instant::now();
    let mut p = start(cmd).map_err(|e| format!("cannot start aria2c: {e}"))?;
    let st = wait_exit(&mut p, Duration::from_secs(300)).map_err(|e| format!("aria2c: {e}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let ok = st.success() && fs::metadata(dir.join("out")).map(|m| m.len()).unwrap_or(0) == t.size;
    let _ = fs::remove_dir_all(&dir);
    if !ok {
        return Err(format!(
            "aria2c: download failed ({st}; see logs/aria2c-{run}.log)"
        ));
    }
    Ok(Json::new()
        .num("secs", secs)
        .num("gib_per_s", t.size as f64 / (1u64 << 30) as f64 / secs))
}

/// kill -9 the downloader once half the pieces are recorded, start it again, `/get` again.
fn resume_transfer(ctx: &Ctx, t: &mut TransferSetup) -> Res<Json> {
    let count = t.size.div_ceil(1 << 20) as usize;
    let (mut d, _) = t.downloader(ctx, false)?;
    let state = t.downloads().join(format!(".{}.state", t.name));
    let t0 = d.get(&t.name)?;
    let end = t0 + Duration::from_secs(300);
    let mut recorded = 0;
    while Instant::now() < end {
        // The header line, then one line per verified piece.
        recorded = fs::read(&state)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count().saturating_sub(1))
            .unwrap_or(0);
        if recorded >= count / 2 {
            break;
        }
        if let Ok((l, _)) = d.lines.try_recv() {
            if l.contains(&format!("downloaded {}:", t.name)) {
                return Err("genp2p: the download finished before half of it was recorded".into());
            }
        }
        thread::sleep(Duration::from_micros(500));
    }
    if recorded < count / 2 {
        return Err(format!(
            "genp2p: only {recorded} of {count} pieces recorded in 300 s"
        ));
    }
    let _ = d.proc.child.kill(); // SIGKILL
    let _ = d.proc.child.wait();
    let first_secs = t0.elapsed().as_secs_f64();
    drop(d);
    let (mut d, r0) = t.downloader(ctx, true)?;
    let joined_secs = r0.elapsed().as_secs_f64();
    let g = d.get(&t.name)?;
    let done = format!("downloaded {}:", t.name);
    let (which, line, t1) = d.until(&["resuming ", &done], Duration::from_secs(300))?;
    if which != 0 {
        return Err(format!(
            "genp2p: no `resuming` line after the restart: {line}"
        ));
    }
    let (kept, of) = line
        .split_once(": ")
        .and_then(|(_, r)| {
            let mut w = r.split(' ');
            Some((
                w.next()?.parse::<i64>().ok()?,
                w.nth(1)?.parse::<i64>().ok()?,
            ))
        })
        .unwrap_or((-1, -1));
    let (_, fin, t2) = d.until(&[&done], Duration::from_secs(600))?;
    let got = t.downloads().join(&t.name);
    let ok = fs::metadata(&got).map(|m| m.len()).unwrap_or(0) == t.size;
    drop(d);
    let _ = fs::remove_file(&got);
    if !ok {
        return Err(format!(
            "genp2p: resumed {} is not {} bytes",
            got.display(),
            t.size
        ));
    }
    Ok(Json::new()
        .int("recorded_at_kill", recorded as i64)
        .int("kept", kept)
        .int("pieces", of)
        .num("first_secs", first_secs)
        .num("restart_joined_secs", joined_secs)
        .num("reverify_secs", t1.duration_since(r0).as_secs_f64())
        .num("get_to_resuming_secs", t1.duration_since(g).as_secs_f64())
        .num("rest_secs", t2.duration_since(t1).as_secs_f64())
        .num("restart_to_done_secs", t2.duration_since(r0).as_secs_f64())
        .num(
            "total_secs",
            first_secs + t2.duration_since(r0).as_secs_f64(),
        )
        .str("line", &fin))
}

pub fn transfer(ctx: &Ctx, args: &[String]) -> Res<()> {
    let mib: u64 = arg(args, "--mib", 1024);
    let runs: usize = arg(args, "--runs", 3);
    let resume_runs: usize = arg(args, "--resume-runs", runs);
    let shm = Path::new("/dev/shm");
    let root = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        ctx.out.clone()
    };
    let scratch = root.join(format!("genp2p-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    let _cleanup = ScratchDir(scratch.clone());
    let share = scratch.join("share");
    fs::create_dir_all(&share).map_err(|e| e.to_string())?;
    let name = format!("bench-{mib}MiB.bin");
    let size = mib << 20;
    let w0 = Instant::now();
    write_random(&share.join(&name), size)?;
    eprintln!(
        "  wrote {size} bytes to {} in {:.1}s",
        share.join(&name).display(),
        w0.elapsed().as_secs_f64()
    );

    let (_mgr, manager) = start_manager(ctx, "transfer", 64)?;
    let s0 = Instant::now();
    let sharer = FileServant::start(ctx, "sharer", manager, Some(&share), None)?;
    wait_for_line(
        &sharer.log,
        &format!("sharing {name} "),
        Duration::from_secs(300),
    )
    .ok_or("the sharer did not index the file within 300 s")?;
    let index_secs = s0.elapsed().as_secs_f64();
    wait_for_line(&sharer.log, "joined as sharer", Duration::from_secs(20))
        .ok_or("the sharer did not join within 20 s")?;
    let mut t = TransferSetup {
        manager,
        name,
        size,
        scratch: scratch.clone(),
        sharer_pid: sharer.proc.pid(),
        seq: 0,
    };

    let have_socat = which("socat").is_some();
    let have_aria = which("aria2c").is_some();
    let have_nginx = which("nginx").is_some();
    let mut nginx = None;
    let mut missing = Vec::new();
    if !have_socat {
        missing
            .push("socat (Debian package socat) not installed: socat baseline skipped".to_owned());
    }
    if !have_aria || !have_nginx {
        missing.push(format!(
            "{} not installed: aria2c baseline skipped",
            [
                (!have_aria).then_some("aria2c (Debian package aria2)"),
                (!have_nginx).then_some("nginx (Debian package nginx-light)")
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ")
        ));
    } else {
        match start_nginx(ctx, &t) {
            Ok(n) => nginx = Some(n),
            Err(e) => missing.push(format!(
                "nginx did not start ({e}): aria2c baseline skipped"
            )),
        }
    }
    ctx.emit(
        Json::new()
            .str("test", "transfer-setup")
            .int("bytes", size as i64)
            .int("pieces", size.div_ceil(1 << 20) as i64)
            .str("where", &root.display().to_string())
            .num("index_secs", index_secs)
            .str("socat", &deb_version("socat"))
            .str("aria2", &deb_version("aria2"))
            .str(
                "nginx",
                &Some(deb_version("nginx-light"))
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| deb_version("nginx")),
            )
            .str("skipped", &missing.join("; ")),
    );

    let systems = ["genp2p", "socat", "aria2c"];
    for run in 0..runs {
        for k in 0..systems.len() {
            let system = systems[(run + k) % systems.len()];
            let head = Json::new()
                .str("test", "transfer")
                .str("system", system)
                .int("run", run as i64)
                .int("bytes", size as i64);
            let r = match system {
                "genp2p" => genp2p_transfer(ctx, &mut t),
                "socat" if have_socat => socat_transfer(&t),
                "aria2c" => match &nginx {
                    Some((_, port)) => aria2c_transfer(ctx, &t, *port, run),
                    None => continue,
                },
                _ => continue,
            };
            ctx.emit_result(head, r, &format!("transfer run {run}"));
        }
    }
    drop(nginx);
    for run in 0..resume_runs {
        let head = Json::new()
            .str("test", "transfer-resume")
            .int("run", run as i64)
            .int("bytes", size as i64);
        let r = resume_transfer(ctx, &mut t);
        ctx.emit_result(head, r, &format!("transfer resume run {run}"));
    }
    drop(sharer);
    Ok(())
}
