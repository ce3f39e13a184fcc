//! The overlay's state machine fed by hand, as a hostile or unlucky neighbour would feed
//! it: lines out of order, gaps that never fill, second copies, strangers, and lists far
//! past their bounds. No sockets: the state takes inputs and returns actions, so each
//! case is exact.

use genp2p::overlay::params::bounds;
use genp2p::overlay::{Action, Input, LineId, Message, Millis, Overlay, Params, Rng, Timer, Types};

#[derive(Debug, Clone)]
struct T;

impl Types for T {
    type Peer = u32;
    type Author = u32;
    type Line = String;
}

const ME: u32 = 0;

struct Fixture {
    overlay: Overlay<T>,
    rng: Rng,
    now: Millis,
}

impl Fixture {
    /// A servant with `neighbours` as its active set (each one joined through us).
    fn new(neighbours: &[u32]) -> Fixture {
        let mut f = Fixture {
            overlay: Overlay::new(ME, Params::default()),
            rng: Rng::seeded(7),
            now: 1_000,
        };
        let mut out = Vec::new();
        f.overlay.start(&mut f.rng, &mut out);
        for &n in neighbours {
            f.input(Input::Received(n, Message::Join));
        }
        assert_eq!(f.overlay.active().len(), neighbours.len());
        f
    }

    fn input(&mut self, input: Input<T>) -> Vec<Action<T>> {
        let mut out = Vec::new();
        self.overlay
            .handle(self.now, input, &mut self.rng, &mut out);
        out
    }

    fn gossip(&mut self, from: u32, author: u32, incarnation: u64, seq: u64) -> Vec<Action<T>> {
        let id = LineId {
            author,
            incarnation,
            seq,
        };
        let line = format!("{author}/{incarnation}/{seq}");
        self.input(Input::Received(from, Message::Gossip { id, hops: 1, line }))
    }
}

fn shown(out: &[Action<T>]) -> Vec<(u32, u64, u64)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Show { id, .. } => Some((id.author, id.incarnation, id.seq)),
            _ => None,
        })
        .collect()
}

fn graft_timers(out: &[Action<T>]) -> usize {
    out.iter()
        .filter(|a| {
            matches!(
                a,
                Action::SetTimer {
                    timer: Timer::Graft(_),
                    ..
                }
            )
        })
        .count()
}

#[test]
fn lines_of_one_author_are_shown_in_order_whatever_order_they_come_in() {
    let mut f = Fixture::new(&[1, 2]);
    assert_eq!(shown(&f.gossip(1, 9, 1, 1)), [(9, 1, 1)]);
    // 4 and 3 overtake 2: held back, and 2 and 3 are asked for if they do not come.
    let out = f.gossip(1, 9, 1, 4);
    assert!(shown(&out).is_empty(), "{out:?}");
    assert_eq!(graft_timers(&out), 2);
    assert!(shown(&f.gossip(2, 9, 1, 3)).is_empty());
    assert_eq!(
        shown(&f.gossip(2, 9, 1, 2)),
        [(9, 1, 2), (9, 1, 3), (9, 1, 4)]
    );
}

#[test]
fn a_gap_that_never_fills_is_reported_lost_and_the_rest_shown() {
    let mut f = Fixture::new(&[1]);
    f.gossip(1, 9, 1, 1);
    assert!(shown(&f.gossip(1, 9, 1, 5)).is_empty());
    f.now += Params::default().lost_after;
    let out = f.input(Input::Timer(Timer::Gap(9)));
    assert!(
        out.iter().any(|a| matches!(
            a,
            Action::Lost {
                author: 9,
                incarnation: 1,
                first: 2,
                last: 4
            }
        )),
        "{out:?}"
    );
    assert_eq!(shown(&out), [(9, 1, 5)]);
    // A missing line that turns up late is not shown out of order.
    assert!(shown(&f.gossip(1, 9, 1, 3)).is_empty());
    assert_eq!(shown(&f.gossip(1, 9, 1, 6)), [(9, 1, 6)]);
}

#[test]
fn a_second_copy_is_not_shown_and_prunes_the_link_it_came_on() {
    let mut f = Fixture::new(&[1, 2]);
    let first = f.gossip(1, 9, 1, 1);
    assert_eq!(shown(&first), [(9, 1, 1)]);
    // Passed on whole to the other eager neighbour, not back to the sender.
    assert!(first
        .iter()
        .any(|a| matches!(a, Action::Send(2, Message::Gossip { .. }))));
    assert!(!first
        .iter()
        .any(|a| matches!(a, Action::Send(1, Message::Gossip { .. }))));
    let second = f.gossip(2, 9, 1, 1);
    assert!(shown(&second).is_empty());
    assert!(
        second
            .iter()
            .any(|a| matches!(a, Action::Send(2, Message::Prune))),
        "{second:?}"
    );
    assert!(!f.overlay.is_eager(&2));
    // The pruned link now gets only ids of later lines, after the announce delay.
    f.gossip(1, 9, 1, 2);
    f.now += Params::default().announce_every;
    let out = f.input(Input::Timer(Timer::Announce));
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::Send(2, Message::IHave(ids)) if ids.len() == 1)),
        "{out:?}"
    );
}

#[test]
fn a_restarted_author_is_shown_at_once_and_its_old_numbers_do_not_silence_it() {
    let mut f = Fixture::new(&[1]);
    for seq in 1..=3 {
        f.gossip(1, 9, 1, seq);
    }
    assert_eq!(shown(&f.gossip(1, 9, 2, 1)), [(9, 2, 1)]);
    // A late line of the old run is not shown after the new one.
    assert!(shown(&f.gossip(1, 9, 1, 4)).is_empty());
    assert_eq!(shown(&f.gossip(1, 9, 2, 2)), [(9, 2, 2)]);
}

#[test]
fn the_highest_number_an_author_can_sign_does_not_overflow_or_silence_others() {
    let mut f = Fixture::new(&[1]);
    f.gossip(1, 9, 1, 1);
    assert!(shown(&f.gossip(1, 9, 1, u64::MAX)).is_empty());
    f.now += Params::default().lost_after;
    let out = f.input(Input::Timer(Timer::Gap(9)));
    assert_eq!(shown(&out), [(9, 1, u64::MAX)]);
    assert!(shown(&f.gossip(1, 9, 1, u64::MAX)).is_empty());
    assert_eq!(shown(&f.gossip(1, 8, 1, 1)), [(8, 1, 1)]);
}

#[test]
fn lines_and_ids_from_a_servant_that_is_not_a_neighbour_are_ignored() {
    let mut f = Fixture::new(&[1]);
    assert!(f.gossip(5, 9, 1, 1).is_empty());
    let ids = vec![(
        LineId {
            author: 9,
            incarnation: 1,
            seq: 2,
        },
        1,
    )];
    assert!(f.input(Input::Received(5, Message::IHave(ids))).is_empty());
    assert_eq!(shown(&f.gossip(1, 9, 1, 1)), [(9, 1, 1)]);
}

#[test]
fn a_flood_of_ids_is_cut_per_message_and_bounded_in_all() {
    let mut f = Fixture::new(&[1]);
    let ids: Vec<_> = (1..=10_000)
        .map(|seq| {
            (
                LineId {
                    author: 9,
                    incarnation: 1,
                    seq,
                },
                1,
            )
        })
        .collect();
    let out = f.input(Input::Received(1, Message::IHave(ids)));
    assert_eq!(graft_timers(&out), bounds::IDS);
    let mut awaited = bounds::IDS;
    for author in 10..100 {
        let ids: Vec<_> = (1..=300)
            .map(|seq| {
                (
                    LineId {
                        author,
                        incarnation: 1,
                        seq,
                    },
                    1,
                )
            })
            .collect();
        awaited += graft_timers(&f.input(Input::Received(1, Message::IHave(ids))));
    }
    assert_eq!(awaited, bounds::MISSING);
}

#[test]
fn a_huge_shuffle_is_cut_and_ourselves_never_become_a_neighbour() {
    let mut f = Fixture::new(&[1]);
    let mut peers: Vec<u32> = vec![ME];
    peers.extend(100..10_100);
    let out = f.input(Input::Received(
        1,
        Message::Shuffle {
            origin: 1,
            ttl: 0,
            peers,
        },
    ));
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::Send(1, Message::ShuffleReply { .. }))));
    let passive = f.overlay.passive();
    assert!(
        !passive.is_empty() && passive.len() < bounds::PEERS,
        "{passive:?}"
    );
    assert!(
        passive
            .iter()
            .all(|&p| (100..100 + bounds::PEERS as u32).contains(&p)),
        "{passive:?}"
    );
    let out = f.input(Input::Received(
        1,
        Message::ForwardJoin { peer: ME, ttl: 0 },
    ));
    assert!(out.is_empty(), "{out:?}");
    assert!(!f.overlay.active().contains(&ME) && !f.overlay.passive().contains(&ME));
}

#[test]
fn a_summary_offers_a_neighbour_what_it_missed() {
    let mut f = Fixture::new(&[1]);
    for seq in 1..=4 {
        f.gossip(1, 9, 1, seq);
    }
    // A new neighbour, in the overlay for longer than these lines, says it has 9's
    // lines up to 2: lines 3 and 4 are offered.
    f.now += 6_000;
    f.input(Input::Received(2, Message::Join));
    let summary = Message::Summary {
        member_for: 60_000,
        last: vec![(9, 1, 2)],
    };
    let out = f.input(Input::Received(2, summary));
    let offered: Vec<u64> = out
        .iter()
        .filter_map(|a| match a {
            Action::Send(2, Message::IHave(ids)) => {
                Some(ids.iter().map(|(id, _)| id.seq).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(offered, [3, 4]);
}

#[test]
fn a_neighbour_that_grafts_the_same_lines_over_and_over_gets_a_bounded_share() {
    let mut f = Fixture::new(&[1, 2]);
    for seq in 1..=300 {
        f.gossip(1, 9, 1, seq);
    }
    let ids: Vec<_> = (1..=300)
        .map(|seq| LineId {
            author: 9,
            incarnation: 1,
            seq,
        })
        .collect();
    let mut sent = 0;
    for _ in 0..50 {
        let out = f.input(Input::Received(2, Message::Graft(ids.clone())));
        sent += out
            .iter()
            .filter(|a| matches!(a, Action::Send(2, Message::Gossip { .. })))
            .count();
    }
    // 50 grafts of 300 ids within one second: 15,000 lines asked for, one second's
    // share sent.
    assert_eq!(sent, bounds::GRAFTED_PER_SECOND, "{sent}");
    // The next second brings a new share; an honest graft of one line is answered.
    f.now += 1_000;
    let out = f.input(Input::Received(2, Message::Graft(vec![ids[0].clone()])));
    assert_eq!(
        out.iter()
            .filter(|a| matches!(a, Action::Send(2, Message::Gossip { .. })))
            .count(),
        1
    );
}

#[test]
fn strangers_asking_by_the_hundred_push_out_a_bounded_few() {
    let originals: Vec<u32> = (1..=6).collect();
    let mut f = Fixture::new(&originals);
    // A hundred new identities ask at once, by every way that takes a place: joins,
    // high-priority requests, and joins' walks ending here (sent by a neighbour).
    let mut pushed_out = 0;
    for k in 0..100u32 {
        let (from, msg) = match k % 3 {
            0 => (1_000 + k, Message::Join),
            1 => (1_000 + k, Message::Neighbor { high: true }),
            _ => (
                originals[0],
                Message::ForwardJoin {
                    peer: 5_000 + k,
                    ttl: 0,
                },
            ),
        };
        let out = f.input(Input::Received(from, msg));
        pushed_out += out
            .iter()
            .filter(|a| matches!(a, Action::NeighborDown(_)))
            .count();
    }
    // Without the cap each request pushes one out: the set churns a hundred times.
    assert!(pushed_out <= bounds::EVICTIONS, "{pushed_out} pushed out");
    assert_eq!(f.overlay.active().len(), 6);
    // After the window, a newcomer is taken again.
    f.now += Params::default().evict_window;
    f.input(Input::Received(9_999, Message::Neighbor { high: true }));
    assert!(
        f.overlay.active().contains(&9_999),
        "{:?}",
        f.overlay.active()
    );
}

#[test]
fn a_summary_at_the_highest_incarnation_or_number_is_answered_without_a_panic() {
    let mut f = Fixture::new(&[1]);
    f.gossip(1, 9, u64::MAX, 1);
    f.gossip(1, 9, u64::MAX, 2);
    f.now += 6_000;
    f.input(Input::Received(2, Message::Join));
    for last in [0, 1, u64::MAX] {
        let summary = Message::Summary {
            member_for: 60_000,
            last: vec![(9, u64::MAX, last)],
        };
        let out = f.input(Input::Received(2, summary));
        let offered: Vec<u64> = out
            .iter()
            .filter_map(|a| match a {
                Action::Send(2, Message::IHave(ids)) => {
                    Some(ids.iter().map(|(id, _)| id.seq).collect::<Vec<_>>())
                }
                _ => None,
            })
            .flatten()
            .collect();
        let want: Vec<u64> = (1..=2).filter(|&s| s > last).collect();
        assert_eq!(offered, want, "last {last}");
    }
}
