//! `bench_driver ready`: how soon a servant is on the network when its share holds GiBs
//! it has not hashed yet, beside the same servant with an empty share in the same run,
//! and how long the hashing then takes (it runs beside the chat, on `share-index`).

use crate::bench_common::*;
use crate::harness::{start, start_manager, wait_for_line, Ctx, Res};
use std::fs::{self, File};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn ready(ctx: &Ctx, args: &[String]) -> Res<()> {
    let gib: u64 = arg(args, "--gib", 2);
    let full = ctx.out.join("ready-share");
    let empty = ctx.out.join("ready-empty");
    for d in [&full, &empty] {
        fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    // Sparse files: GiBs to hash, none of them on the disk.
    for i in 0..4 {
        let f = File::create(full.join(format!("zeros-{i}.bin"))).map_err(|e| e.to_string())?;
        f.set_len(gib << 28).map_err(|e| e.to_string())?;
    }
    // The configuration files live elsewhere: name the folders whole.
    let canonical =
        |d: &std::path::Path| fs::canonicalize(d).map_err(|e| format!("{}: {e}", d.display()));
    let (full, empty) = (canonical(&full)?, canonical(&empty)?);
    let (_manager, addr) = start_manager(ctx, "ready", 64)?;
    let mut figures = Json::new()
        .str("test", "ready")
        .int("bytes", (gib << 30) as i64);
    for (tag, folder) in [("empty", &empty), ("full", &full)] {
        let conf = ctx.conf(
            &format!("servant-ready-{tag}.xml"),
            &format!(
                "<config><connectionmgr>127.0.0.1</connectionmgr><port>{}</port><name>ready-{tag}</name>\
                 <listen>0</listen><bind>127.0.0.1</bind><share>{}</share></config>\n",
                addr.port(),
                folder.display()
            ),
        );
        let name = format!("servant-ready-{tag}.log");
        let log = ctx.out.join("logs").join(&name);
        let mut cmd = Command::new(ctx.bin.join("servant"));
        cmd.arg("--config")
            .arg(conf)
            .arg("--no-input")
            .stdout(Stdio::null())
            .stderr(ctx.log(&name));
        let t0 = Instant::now();
        let _servant = start(cmd).map_err(|e| format!("cannot start a servant: {e}"))?;
        wait_for_line(&log, "joined as", Duration::from_secs(60))
            .ok_or(format!("{tag}: the servant did not join within 60 s"))?;
        figures = figures.num(&format!("{tag}_join_ms"), t0.elapsed().as_secs_f64() * 1e3);
        if tag == "full" {
            wait_for_line(&log, " shared file(s), ", Duration::from_secs(120))
                .ok_or("the share was not hashed within 120 s")?;
            figures = figures.num("hashed_ms", t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let _ = fs::remove_dir_all(&full);
    ctx.emit(figures);
    Ok(())
}
