//! The systems the fan-out benchmark puts side by side, each started as a `System`:
//! genp2p's servants in the full mesh (the article's design) or in the overlay, genp2p's
//! sender with stub receivers (`servant_stub`), the libp2p baseline (gossipsub) and the
//! floor (`fanout_floor`: plain TCP writes, the least a fan-out can cost).

use crate::harness::{start, wait_for_line, Ctx, Proc, Res};
use crate::system::{Crew, System};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How the servants of a system link: to every servant (the article's design, kept at
/// any N so full-mesh figures stay comparable), or in the overlay past the default
/// `<fullmesh>` of 8.
#[derive(Clone, Copy, PartialEq)]
pub enum Links {
    Mesh,
    Overlay,
}

fn servant_conf(ctx: &Ctx, tag: &str, i: usize, manager: SocketAddr, links: Links) -> PathBuf {
    let full_mesh = match links {
        Links::Mesh => 1_000_000,
        Links::Overlay => 8,
    };
    ctx.conf(
        &format!("servant-{tag}-{i}.xml"),
        &format!(
            "<config><connectionmgr>127.0.0.1</connectionmgr><port>{}</port><name>s{i}</name>\
             <listen>0</listen><bind>127.0.0.1</bind><heartbeat>1</heartbeat>\
             <maxconnections>1024</maxconnections><maxperaddress>1024</maxperaddress>\
             <fullmesh>{full_mesh}</fullmesh></config>\n",
            manager.port()
        ),
    )
}

pub fn start_servant(ctx: &Ctx, tag: &str, i: usize, manager: SocketAddr) -> Res<Proc> {
    start_servant_linked(ctx, tag, i, manager, Links::Mesh)
}

fn start_servant_linked(
    ctx: &Ctx,
    tag: &str,
    i: usize,
    manager: SocketAddr,
    links: Links,
) -> Res<Proc> {
    let conf = servant_conf(ctx, tag, i, manager, links);
    let mut cmd = Command::new(ctx.bin.join("servant"));
    cmd.arg("--config")
        .arg(conf)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(ctx.log(&format!("servant-{tag}-{i}.log")));
    start(cmd).map_err(|e| format!("cannot start servant {i}: {e}"))
}

fn start_stub(ctx: &Ctx, tag: &str, i: usize, manager: SocketAddr) -> Res<Proc> {
    let mut cmd = Command::new(ctx.ex.join("servant_stub"));
    cmd.args([
        "--manager",
        &manager.to_string(),
        "--name",
        &format!("s{i}"),
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(ctx.log(&format!("stub-{tag}-{i}.log")));
    start(cmd).map_err(|e| format!("cannot start servant_stub {i}: {e}"))
}

pub fn genp2p_system(ctx: &Ctx, n: usize, manager: (SocketAddr, u32), stub: bool) -> Res<System> {
    genp2p_linked(ctx, n, manager, stub, Links::Mesh)
}

pub fn genp2p_linked(
    ctx: &Ctx,
    n: usize,
    manager: (SocketAddr, u32),
    stub: bool,
    links: Links,
) -> Res<System> {
    let tag = match (stub, links) {
        (true, _) => format!("n{n}-stub"),
        (false, Links::Mesh) => format!("n{n}"),
        (false, Links::Overlay) => format!("n{n}-overlay"),
    };
    let (etx, erx) = mpsc::channel();
    let mut crew = Crew::default();
    // The sender first, so that its log's first lines are its own start.
    let mut sender = start_servant_linked(ctx, &tag, 0, manager.0, links)?;
    let input = sender.child.stdin.take().unwrap();
    crew.sender(sender, None);
    for i in 1..=n {
        let p = if stub {
            start_stub(ctx, &tag, i, manager.0)?
        } else {
            start_servant_linked(ctx, &tag, i, manager.0, links)?
        };
        crew.receiver(i - 1, p, &etx, None);
    }
    crew.count_too(manager.1);
    if links == Links::Overlay {
        // Measured once every servant has closed its links to every servant.
        for i in 0..=n {
            let log = ctx.out.join("logs").join(format!("servant-{tag}-{i}.log"));
            wait_for_line(&log, "closed the links to ", Duration::from_secs(60))
                .ok_or_else(|| format!("overlay servant {i} never left the full mesh"))?;
        }
    }
    let name = match links {
        Links::Mesh => "genp2p",
        Links::Overlay => "genp2p-overlay",
    };
    Ok(crew.system(name, input, erx))
}

/// The libp2p baseline (bench/libp2p-chat, a cargo project of its own; `make bench`
/// builds it): gossipsub over TCP with noise and yamux, every message signed by its
/// author. The sender listens; each receiver dials it, so a message reaches every
/// receiver in one hop (flood publishing), as genp2p's full mesh does. `None` when the
/// baseline is not built.
pub fn libp2p_system(ctx: &Ctx, n: usize) -> Res<Option<System>> {
    let exe = PathBuf::from("bench/libp2p-chat/target/release/libp2p-chat");
    if !exe.exists() {
        return Ok(None);
    }
    let (etx, erx) = mpsc::channel();
    let (ptx, prx) = mpsc::channel();
    let sender_log = ctx.out.join("logs").join(format!("libp2p-n{n}-send.log"));
    let mut cmd = Command::new(&exe);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(ctx.log(&format!("libp2p-n{n}-send.log")));
    let mut sender = start(cmd).map_err(|e| format!("cannot start libp2p-chat: {e}"))?;
    let input = sender.child.stdin.take().unwrap();
    let mut crew = Crew::default();
    crew.sender(sender, Some(ptx.clone()));
    let (_, port) = prx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|_| "the libp2p sender did not start")?;
    for i in 0..n {
        let mut cmd = Command::new(&exe);
        cmd.args(["--dial", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(ctx.log(&format!("libp2p-n{n}-recv-{i}.log")));
        let p = start(cmd).map_err(|e| format!("cannot start libp2p-chat {i}: {e}"))?;
        crew.receiver(i, p, &etx, Some(ptx.clone()));
    }
    for _ in 0..n {
        prx.recv_timeout(Duration::from_secs(20))
            .map_err(|_| "libp2p receivers did not start")?;
    }
    // Formed when the sender knows every receiver subscribed.
    wait_for_line(
        &sender_log,
        &format!("SUBSCRIBED {n}"),
        Duration::from_secs(30 + n as u64),
    )
    .ok_or_else(|| format!("the libp2p sender never saw {n} subscribers"))?;
    Ok(Some(crew.system("libp2p", input, erx)))
}

pub fn floor_system(ctx: &Ctx, n: usize) -> Res<System> {
    let (etx, erx) = mpsc::channel();
    let (ptx, prx) = mpsc::channel();
    let mut crew = Crew::default();
    for i in 0..n {
        let mut cmd = Command::new(ctx.ex.join("fanout_floor"));
        cmd.arg("recv")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(ctx.log(&format!("floor-n{n}-recv-{i}.log")));
        let p = start(cmd).map_err(|e| format!("cannot start fanout_floor: {e}"))?;
        crew.receiver(i, p, &etx, Some(ptx.clone()));
    }
    let mut ports = vec![0u16; n];
    let end = Instant::now() + Duration::from_secs(20);
    for _ in 0..n {
        let left = end.saturating_duration_since(Instant::now());
        let (i, p) = prx
            .recv_timeout(left)
            .map_err(|_| "floor receivers did not start")?;
        ports[i] = p;
    }
    let mut cmd = Command::new(ctx.ex.join("fanout_floor"));
    cmd.arg("send")
        .args(ports.iter().map(|p| p.to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(ctx.log(&format!("floor-n{n}-send.log")));
    let mut sender = start(cmd).map_err(|e| format!("cannot start fanout_floor send: {e}"))?;
    let input = sender.child.stdin.take().unwrap();
    crew.sender(sender, None);
    Ok(crew.system("floor", input, erx))
}
