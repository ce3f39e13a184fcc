//! The overlay's own code in the simulator, at a size a test can afford: 1,000 servants
//! join, a fifth fail at once, the network splits in two and heals (`make sim` runs the
//! same scenario at 10,000 and 100,000).

use genp2p::overlay::sim::{Report, Sim, SimConfig};

fn run(servants: usize, seed: u64, flood: bool) -> Report {
    let mut cfg = SimConfig::new(servants, seed);
    cfg.flood = flood;
    Sim::new(cfg).run()
}

fn check(r: &Report) {
    let kind = if r.flood { "flooding" } else { "plumtree" };
    for p in &r.phases {
        assert!(p.lines > 0, "{kind}: {}: no lines written", p.name);
        assert_eq!(p.doubled, 0, "{kind}: {}: a line shown twice", p.name);
        // Stable, and healed after the failure: every survivor shows every line.
        if p.name == "stable" || p.name.starts_with("after") {
            assert_eq!(p.reliability_min, 1.0, "{kind}: {}: {:?}", p.name, p);
        }
        // Lines written while servants failed or the network was split: the issue asks
        // for 99.9 % of survivors once healed; here nothing may be missed either.
        assert!(p.reliability >= 0.999, "{kind}: {}: {:?}", p.name, p);
    }
    assert_eq!(r.lost_reported, 0, "{kind}: lines reported lost");
    assert!(
        r.heal_after_failure.is_some() && r.heal_after_split.is_some(),
        "{kind}: not healed: {r:?}"
    );
    assert_eq!(r.one_sided, 0, "{kind}: links only one end counts");
    assert!(
        r.degree_min >= 2 && r.degree_mean > 5.5,
        "{kind}: degree {} / {}",
        r.degree_mean,
        r.degree_min
    );
}

fn stable_redundancy(r: &Report) -> f64 {
    r.phases
        .iter()
        .find(|p| p.name == "stable")
        .map_or(f64::NAN, |p| p.redundancy)
}

#[test]
fn a_thousand_servants_show_every_line_once_through_failure_and_split() {
    let flooding = run(1_000, 1, true);
    check(&flooding);
    // Flooding sends each line over every link: about D - 2 extra copies per servant.
    assert!(
        stable_redundancy(&flooding) > 3.0,
        "flooding: {:?}",
        flooding.phases
    );
    // Plumtree's tree, once formed, sends it about once; a tree still mending from the
    // last membership change costs some seeds more, so the median of three is held to
    // Plumtree's mark.
    let mut plumtree: Vec<f64> = (1..=3)
        .map(|seed| {
            let r = run(1_000, seed, false);
            check(&r);
            stable_redundancy(&r)
        })
        .collect();
    plumtree.sort_by(f64::total_cmp);
    assert!(
        plumtree[1] <= 0.1,
        "plumtree, stable redundancy by seed: {plumtree:?}"
    );
    assert!(
        plumtree[2] < stable_redundancy(&flooding) / 10.0,
        "{plumtree:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let a = run(300, 5, false);
    let b = run(300, 5, false);
    let c = run(300, 6, false);
    assert_eq!(a.events, b.events);
    assert_eq!(a.messages, b.messages);
    assert_ne!(a.events, c.events);
    check(&c);
}
