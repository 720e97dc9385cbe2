//! rte_flow on real ports. net_ring and net_null have no rte_flow: every call must fail
//! with a clear "not supported" error, which is what the dataplane takes as "classify in
//! software". net_tap has an rte_flow parser: where it starts, validation shows how far a
//! rule gets before the kernel would be involved.

#[path = "common/eal.rs"]
mod common;

use std::net::Ipv4Addr;

use palisade_dpdk::flow::{
    Actions, Attributes, FlowCause, FlowErrorKind, Icmp, Ipv4, Item, Match, Pattern, Sctp, Tcp,
    Udp, Vlan,
};
use palisade_dpdk::{Errno, Error, Mempool, MempoolConfig, Port, PortConfig, Vdev};

fn port(vdev: Vdev<'_>, instance: &str) -> Port {
    let eal = common::eal();
    let config = MempoolConfig {
        capacity: 1023,
        cache_size: 0,
        ..MempoolConfig::default()
    };
    let name = format!("flow_{}{instance}", vdev.driver());
    let pool = Mempool::create(eal, &name, &config).expect("pool");
    let id = vdev.create(eal, instance).expect("vdev");
    // net_tap fills every rx descriptor from the pool at setup: keep them fewer than mbufs.
    let config = PortConfig {
        rx_descriptors: 256,
        tx_descriptors: 256,
        ..PortConfig::new(pool)
    };
    Port::configure(id, &config).expect("configure")
}

/// tcp 10.0.0.0/8 -> port 22: count, mark, queue 0.
fn ssh_rule() -> (Pattern, Actions) {
    let pattern = Pattern::new()
        .eth(Item::Any)
        .ipv4(
            Match::new(Ipv4 {
                dst: Ipv4Addr::new(10, 0, 0, 0),
                protocol: 6,
                ..Ipv4::default()
            })
            .mask(Ipv4 {
                dst: Ipv4Addr::new(255, 0, 0, 0),
                protocol: 0xff,
                ..Ipv4::default()
            }),
        )
        .tcp(
            Match::new(Tcp {
                dst_port: 22,
                ..Tcp::default()
            })
            .mask(Tcp {
                dst_port: 0xffff,
                ..Tcp::default()
            }),
        );
    (pattern, Actions::new().count().mark(7).queue(0))
}

#[test]
fn ports_without_rte_flow_say_not_supported() {
    for (vdev, instance) in [(Vdev::Ring, "noflow"), (Vdev::Null, "noflow")] {
        let mut port = port(vdev, instance);
        let p = port.id().get();
        let (pattern, actions) = ssh_rule();
        let attr = Attributes::ingress();

        let err = port
            .validate_flow(&attr, &pattern, &actions)
            .expect_err("no rte_flow");
        assert!(err.is_unsupported());
        assert_eq!(err.errno(), Errno::ENOSYS);
        assert_eq!(err.kind(), FlowErrorKind::Unspecified);
        assert_eq!(
            err.to_string(),
            format!(
                "rte_flow: validate on port {p}: Function not implemented \
                 (ENOSYS: function not implemented)"
            )
        );

        let err = port
            .create_flow(&attr, &pattern, &actions)
            .expect_err("no rte_flow");
        assert!(err.is_unsupported(), "{err}");
        assert_eq!(err.operation(), "create");
        assert_eq!(port.flow_count(), 0);

        for (op, err) in [
            ("flush", port.flush_flows().expect_err("no rte_flow")),
            ("isolate", port.isolate(true).expect_err("no rte_flow")),
        ] {
            assert!(err.is_unsupported(), "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("rte_flow: {op} on port {p}: ")),
                "{err}"
            );
        }

        // Through the crate's error type, the message is the same.
        let via_error: Error = port
            .validate_flow(&attr, &Pattern::new(), &Actions::new().drop())
            .expect_err("no rte_flow")
            .into();
        assert!(
            via_error
                .to_string()
                .ends_with("(ENOSYS: function not implemented)")
        );
        println!("{} port {p}: {via_error}", vdev.driver());
    }
}

/// Whether this process may create a TAP interface; says so loudly when not.
fn can_create_tap() -> bool {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let tun = std::path::Path::new("/dev/net/tun").exists();
    if !(root && tun) {
        eprintln!(
            "\n!!! SKIPPED net_tap rte_flow test: needs root and /dev/net/tun \
             (root: {root}, /dev/net/tun: {tun})\n"
        );
    }
    root && tun
}

#[test]
fn net_tap_parser_accepts_what_it_can_translate_and_names_what_it_cannot() {
    if !can_create_tap() {
        return;
    }
    let iface = format!("pdt{}", std::process::id());
    let mut port = port(Vdev::Tap { iface: &iface }, "parser");
    let p = port.id().get();
    assert_eq!(port.info().expect("info").driver, "net_tap");
    let attr = Attributes::ingress();
    let tcp22 = Match::new(Tcp {
        dst_port: 22,
        ..Tcp::default()
    })
    .mask(Tcp {
        dst_port: 0xffff,
        ..Tcp::default()
    });

    // What TC flower can express passes the parser (validation never reaches the kernel).
    let (ssh, _) = ssh_rule();
    port.validate_flow(&attr, &ssh, &Actions::new().queue(0))
        .expect("eth / ipv4 masked / tcp -> queue");
    let v6 = Pattern::new()
        .eth(Item::Any)
        .vlan(Match::new(Vlan {
            tci: 100,
            ..Vlan::default()
        }))
        .ipv6(Item::Any)
        .udp(Match::new(Udp {
            dst_port: 53,
            ..Udp::default()
        }));
    port.validate_flow(&attr, &v6, &Actions::new().drop())
        .expect("eth / vlan / ipv6 / udp -> drop");

    // Items it has no translation for are refused at the item, before any kernel call.
    for (pattern, index, name) in [
        (
            Pattern::new()
                .eth(Item::Any)
                .ipv4(Item::Any)
                .sctp(Match::new(Sctp {
                    dst_port: 2905,
                    ..Sctp::default()
                })),
            2,
            "sctp",
        ),
        (
            Pattern::new()
                .eth(Item::Any)
                .ipv4(Item::Any)
                .icmp(Match::new(Icmp {
                    icmp_type: 8,
                    code: 0,
                })),
            2,
            "icmp",
        ),
        (
            // A port range (`last`): not in net_tap's parser either.
            Pattern::new()
                .eth(Item::Any)
                .ipv4(Item::Any)
                .tcp(tcp22.last(Tcp {
                    dst_port: 30,
                    ..Tcp::default()
                })),
            2,
            "tcp",
        ),
    ] {
        let err = port
            .validate_flow(&attr, &pattern, &Actions::new().drop())
            .expect_err("not translatable");
        assert!(err.is_unsupported(), "{err}");
        assert_eq!(err.kind(), FlowErrorKind::Item, "{err}");
        assert_eq!(err.cause(), Some(FlowCause::Item { index, name }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "rte_flow: validate on port {p}: item not supported [pattern item {index} ({name})] \
                 (ENOTSUP: operation not supported)"
            )
        );
        println!("net_tap: {err}");
    }

    // So are actions other than drop / queue / rss / passthru.
    let ipv4_tcp = Pattern::new().eth(Item::Any).ipv4(Item::Any).tcp(tcp22);
    for (actions, name) in [
        (Actions::new().count().drop(), "count"),
        (Actions::new().mark(7).queue(0), "mark"),
        (Actions::new().jump(1), "jump"),
    ] {
        let err = port
            .validate_flow(&attr, &ipv4_tcp, &actions)
            .expect_err("not translatable");
        assert!(err.is_unsupported(), "{err}");
        assert_eq!(
            err.cause(),
            Some(FlowCause::Action { index: 0, name }),
            "{err}"
        );
        println!("net_tap: {err}");
    }

    // Creating needs TC flower (sch_multiq, cls_flower); without them the kernel refuses.
    port.start().expect("start");
    match port.create_flow(&attr, &ipv4_tcp, &Actions::new().drop()) {
        Ok(rule) => {
            println!("net_tap created rule {rule:?}: this kernel has TC flower");
            assert_eq!(port.flow_count(), 1);
            port.destroy_flow(rule).expect("destroy");
            let again = port.destroy_flow(rule).expect_err("already destroyed");
            assert_eq!(again.errno().name(), Some("ENOENT"), "{again}");
        }
        Err(e) => {
            println!("net_tap create (kernel without TC flower): {e}");
            assert_eq!(e.operation(), "create");
            assert_eq!(port.flow_count(), 0);
        }
    }
    port.flush_flows().expect("net_tap flushes");
    assert_eq!(port.flow_count(), 0);
}
