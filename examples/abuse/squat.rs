//! `abuse --only squat`: 50 file connections from 50 addresses that ask for pieces and
//! read nothing, again at once when refused or cut. Judged by a 100 MiB download beside
//! them against the same download made without them (at least half its speed).

use crate::harness::{connect_from, nice_this_thread, settle, usage, Ctx, Row, UNPROBED};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub fn squat(ctx: &Ctx) -> Row {
    let share = ctx.dir.join("k-share");
    std::fs::create_dir_all(&share).expect("share folder");
    let size = 100usize << 20;
    let mut data = vec![0u8; size];
    let mut x = 1u64;
    for chunk in data.chunks_mut(8) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(share.join("data.bin"), &data).expect("write data.bin");
    drop(data);
    let (_m, mport) = ctx.manager("<probe>false</probe>");
    let (keeper, kport) = ctx.servant("keeper", mport, "<share>k-share</share>");
    keeper.wait_err("sharing data.bin", Duration::from_secs(30));
    thread::sleep(Duration::from_secs(1));
    let download = |name: &str| -> Option<f64> {
        let (mut d, _) = ctx.servant(name, mport, &format!("<downloads>{name}-dl</downloads>"));
        thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        d.send("/get data.bin");
        let end = t + Duration::from_secs(120);
        while Instant::now() < end {
            if d.out
                .lock()
                .unwrap()
                .iter()
                .any(|(_, l)| l.starts_with("downloaded data.bin: "))
            {
                if std::env::var_os("ABUSE_DEBUG").is_some() {
                    for l in d.err.lock().unwrap().iter() {
                        eprintln!("{name}: {l}");
                    }
                }
                return Some(t.elapsed().as_secs_f64());
            }
            if d.out
                .lock()
                .unwrap()
                .iter()
                .any(|(_, l)| l.contains("download of data.bin stopped"))
            {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
        None
    };
    let before = usage(keeper.pid());
    let alone = download("calm");
    // The file's id, from the keeper's answer to FILES.
    let id = {
        let mut s = TcpStream::connect(("127.0.0.1", kport)).expect("connect");
        let _ = s.write_all(b"FILES\n");
        let mut line = String::new();
        let _ = BufReader::new(s).read_line(&mut line);
        line.split(' ').nth(1).unwrap_or("").to_owned()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let reopened = Arc::new(AtomicU64::new(0));
    let squatters: Vec<_> = (0..50)
        .map(|i| {
            let (stop, reopened, id) = (Arc::clone(&stop), Arc::clone(&reopened), id.clone());
            thread::spawn(move || {
                nice_this_thread();
                let from = Ipv4Addr::new(127, 0, 4, 10 + i as u8);
                let end = Instant::now() + Duration::from_secs(150);
                let mut buf = [0u8; 1];
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let Ok(mut s) = connect_from(from, kport, Some(4096)) else {
                        thread::sleep(Duration::from_millis(100));
                        continue;
                    };
                    let _ = s.write_all(format!("GET {id} 0\nGET {id} 1\nGET {id} 2\n").as_bytes());
                    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                    // Told busy: at it again at once.
                    let mut head = [0u8; 3];
                    if s.read_exact(&mut head).is_err() || &head == b"ERR" {
                        reopened.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    // A byte now and then, until the servant cuts the connection.
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        match s.read(&mut buf) {
                            Ok(0) => break,
                            Ok(_) => thread::sleep(Duration::from_millis(500)),
                            Err(e)
                                if e.kind() == io::ErrorKind::WouldBlock
                                    || e.kind() == io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                    reopened.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(3));
    let attacked = download("squatted");
    if std::env::var_os("ABUSE_DEBUG").is_some() {
        for l in keeper.err.lock().unwrap().iter() {
            eprintln!("keeper: {l}");
        }
    }
    let during = usage(keeper.pid());
    stop.store(true, Ordering::Relaxed);
    let after = settle(squatters, keeper.pid());
    let speed =
        |t: Option<f64>| t.map_or("failed".to_owned(), |t| format!("{:.0} MiB/s", 100.0 / t));
    let ratio = match (alone, attacked) {
        (Some(a), Some(b)) => format!("{:.0} %", 100.0 * a / b),
        _ => "-".into(),
    };
    let ok = matches!((alone, attacked), (Some(a), Some(b)) if a / b >= 0.5);
    Row {
        attack: "upload squatters (slots)",
        size: format!("50 connections from 50 addresses, reading a byte each 0.5 s, again at once when refused or cut ({} times)", reopened.load(Ordering::Relaxed)),
        seen: UNPROBED,
        usage: [before, during, after],
        ok,
        outcome: format!(
            "100 MiB download: {} alone, {} beside them ({ratio} of its unattacked speed); {} slots taken over",
            speed(alone),
            speed(attacked),
            keeper.count_err("upload slot of")
        ),
    }
}
