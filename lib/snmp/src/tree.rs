//! The pure core: a [`MibSnapshot`] laid out as the sorted list of the instances the
//! agent serves, and the GET / GETNEXT look-ups on it. No I/O, no clock of its own.

use std::time::Instant;

use async_snmp::{Oid, Value};

use crate::layout::{if_mib, palisade, system};
use crate::snapshot::{DeviceGroup, FleetDevice, FleetGroup, Interface, MibSnapshot};

/// The agent's `sysUpTime` clock: hundredths of a second since the agent started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
}

impl Clock {
    pub(crate) fn starting_at(start: Instant) -> Self {
        Clock { start }
    }

    /// TimeTicks at `at`, modulo 2^32 as RFC 2578 defines them.
    pub(crate) fn ticks(&self, at: Instant) -> u32 {
        let hundredths = at.saturating_duration_since(self.start).as_millis() / 10;
        (hundredths % (1 << 32)) as u32
    }

    /// A TimeStamp: the ticks at an event, 0 for none or one before the start.
    fn stamp(&self, at: Option<Instant>) -> u32 {
        match at {
            Some(at) if at >= self.start => self.ticks(at),
            _ => 0,
        }
    }
}

/// What a GET finds at an OID.
#[derive(Debug, PartialEq)]
pub(crate) enum Lookup<'a> {
    Value(&'a Value),
    /// The object is served, this instance of it is not.
    NoSuchInstance,
    /// No served object is there.
    NoSuchObject,
}

/// The instances served, in strictly increasing OID order, and the objects (scalars
/// and columns, without instance) they belong to.
#[derive(Debug)]
pub(crate) struct MibTree {
    entries: Vec<(Oid, Value)>,
    objects: Vec<Oid>,
}

impl MibTree {
    pub(crate) fn build(snapshot: &MibSnapshot, clock: Clock, now: Instant) -> Self {
        let mut b = Builder::default();
        b.system(snapshot, clock.ticks(now));
        if let Some(interfaces) = &snapshot.interfaces {
            b.interfaces(interfaces, clock);
        }
        if let Some(device) = &snapshot.device {
            b.device(device);
        }
        if let Some(fleet) = &snapshot.fleet {
            b.fleet(fleet, clock);
        }
        b.finish()
    }

    pub(crate) fn get(&self, oid: &Oid) -> Lookup<'_> {
        if let Ok(i) = self.entries.binary_search_by(|(o, _)| o.cmp(oid)) {
            return Lookup::Value(&self.entries[i].1);
        }
        // Objects never contain each other: only the greatest one at or before `oid`
        // can be a prefix of it.
        let before = self.objects.partition_point(|o| o <= oid);
        match before.checked_sub(1).map(|i| &self.objects[i]) {
            Some(object) if oid.starts_with(object) => Lookup::NoSuchInstance,
            _ => Lookup::NoSuchObject,
        }
    }

    /// The first instance after `oid` that `visible` accepts.
    pub(crate) fn next(&self, oid: &Oid, visible: impl Fn(&Oid) -> bool) -> Option<&(Oid, Value)> {
        let after = self.entries.partition_point(|(o, _)| o <= oid);
        self.entries[after..].iter().find(|(o, _)| visible(o))
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[(Oid, Value)] {
        &self.entries
    }
}

/// A column of a table: its number in the entry, and its value in a row.
type Column<'a, R> = (u32, &'a dyn Fn(&R) -> Value);

#[derive(Default)]
struct Builder {
    entries: Vec<(Oid, Value)>,
    objects: Vec<Oid>,
}

impl Builder {
    fn scalar(&mut self, object: &[u32], value: Value) {
        self.objects.push(Oid::from_slice(object));
        self.entries
            .push((Oid::new(object.iter().copied().chain([0])), value));
    }

    /// A column of a table whose rows are indexed by one integer: the column object is
    /// served even when the table is empty.
    fn column<R>(
        &mut self,
        entry: &[u32],
        column: u32,
        rows: &[R],
        cell: impl Fn(&R) -> (u32, Value),
    ) {
        let object: Vec<u32> = entry.iter().copied().chain([column]).collect();
        for row in rows {
            let (index, value) = cell(row);
            self.entries
                .push((Oid::new(object.iter().copied().chain([index])), value));
        }
        self.objects.push(Oid::new(object));
    }

    fn system(&mut self, snapshot: &MibSnapshot, up_time: u32) {
        let sys = &snapshot.system;
        self.scalar(system::DESCR, display_string(&sys.descr));
        self.scalar(
            system::OBJECT_ID,
            Value::ObjectIdentifier(sys.object_id.to_snmp()),
        );
        self.scalar(system::UP_TIME, Value::TimeTicks(up_time));
        self.scalar(system::CONTACT, display_string(&sys.contact));
        self.scalar(system::NAME, display_string(&sys.name));
        self.scalar(system::LOCATION, display_string(&sys.location));
        self.scalar(
            system::SERVICES,
            Value::Integer(i32::from(sys.services & 0x7f)),
        );
    }

    fn interfaces(&mut self, interfaces: &[Interface], clock: Clock) {
        use if_mib::*;
        let rows = served_rows(interfaces, |i| i.index, |index| index <= i32::MAX as u32);
        self.scalar(IF_NUMBER, Value::Integer(rows.len() as i32));

        let status = |up: bool| Value::Integer(if up { 1 } else { 2 });
        let counter32 = |n: u64| Value::Counter32(n as u32);
        let if_table: [Column<Interface>; 17] = [
            (IF_INDEX, &|i| Value::Integer(i.index as i32)),
            (IF_DESCR, &|i| display_string(&i.descr)),
            (IF_TYPE, &|i| {
                Value::Integer(i32::try_from(i.if_type).unwrap_or(i32::MAX))
            }),
            (IF_MTU, &|i| {
                Value::Integer(i32::try_from(i.mtu).unwrap_or(i32::MAX))
            }),
            (IF_SPEED, &|i| gauge(i.speed_bps)),
            (IF_PHYS_ADDRESS, &|i| {
                Value::OctetString(i.mac.map(|m| m.to_vec()).unwrap_or_default().into())
            }),
            (IF_ADMIN_STATUS, &|i| status(i.admin_up)),
            (IF_OPER_STATUS, &|i| status(i.oper_up)),
            (IF_LAST_CHANGE, &|i| {
                Value::TimeTicks(clock.stamp(i.last_change))
            }),
            (IF_IN_OCTETS, &|i| counter32(i.counters.in_octets)),
            (IF_IN_UCAST_PKTS, &|i| counter32(i.counters.in_ucast_pkts)),
            (IF_IN_DISCARDS, &|i| counter32(i.counters.in_discards)),
            (IF_IN_ERRORS, &|i| counter32(i.counters.in_errors)),
            (IF_OUT_OCTETS, &|i| counter32(i.counters.out_octets)),
            (IF_OUT_UCAST_PKTS, &|i| counter32(i.counters.out_ucast_pkts)),
            (IF_OUT_DISCARDS, &|i| counter32(i.counters.out_discards)),
            (IF_OUT_ERRORS, &|i| counter32(i.counters.out_errors)),
        ];
        for (column, cell) in if_table {
            self.column(IF_ENTRY, column, &rows, |i| (i.index, cell(i)));
        }

        let if_x_table: [Column<Interface>; 7] = [
            (IF_NAME, &|i| display_string(&i.name)),
            (IF_HC_IN_OCTETS, &|i| Value::Counter64(i.counters.in_octets)),
            (IF_HC_IN_UCAST_PKTS, &|i| {
                Value::Counter64(i.counters.in_ucast_pkts)
            }),
            (IF_HC_OUT_OCTETS, &|i| {
                Value::Counter64(i.counters.out_octets)
            }),
            (IF_HC_OUT_UCAST_PKTS, &|i| {
                Value::Counter64(i.counters.out_ucast_pkts)
            }),
            // Mb/s, rounded to the nearest (RFC 2863).
            (IF_HIGH_SPEED, &|i| {
                gauge(i.speed_bps.saturating_add(500_000) / 1_000_000)
            }),
            (IF_ALIAS, &|i| octets(&i.alias, 64)),
        ];
        for (column, cell) in if_x_table {
            self.column(IF_X_ENTRY, column, &rows, |i| (i.index, cell(i)));
        }
    }

    fn device(&mut self, d: &DeviceGroup) {
        use palisade::*;
        let hash = d.program_hash.map(|h| h.to_vec()).unwrap_or_default();
        self.scalar(DEVICE_GENERATION, Value::Counter64(d.generation));
        self.scalar(DEVICE_PROGRAM_HASH, Value::OctetString(hash.into()));
        self.scalar(DEVICE_SESSIONS_ACTIVE, gauge(d.sessions_active));
        self.scalar(
            DEVICE_SESSIONS_CREATED,
            Value::Counter64(d.sessions_created),
        );
        self.scalar(DEVICE_SESSIONS_DENIED, Value::Counter64(d.sessions_denied));
        self.scalar(DEVICE_RULES_HARDWARE, gauge(d.rules_hardware));
        self.scalar(DEVICE_RULES_SOFTWARE, gauge(d.rules_software));
        self.scalar(DEVICE_HW_TABLE_USED, gauge(d.hw_table_used));
        self.scalar(DEVICE_HW_TABLE_CAPACITY, gauge(d.hw_table_capacity));
        self.scalar(DEVICE_MANAGER_CONNECTED, truth_value(d.manager_connected));
    }

    fn fleet(&mut self, fleet: &FleetGroup, clock: Clock) {
        use palisade::*;
        let rows = served_rows(&fleet.devices, |d| d.index, |_| true);
        let count =
            |keep: fn(&FleetDevice) -> bool| gauge(rows.iter().filter(|d| keep(d)).count() as u64);
        self.scalar(FLEET_DEVICES, gauge(rows.len() as u64));
        self.scalar(
            FLEET_DEVICES_IN_SYNC,
            count(|d| d.state == crate::DeviceState::InSync),
        );
        self.scalar(FLEET_DEVICES_CONNECTED, count(|d| d.state.is_connected()));
        self.scalar(FLEET_GENERATION, Value::Counter64(fleet.generation));

        let columns: [Column<FleetDevice>; 5] = [
            (FLEET_DEVICE_NAME, &|d| display_string(&d.name)),
            (FLEET_DEVICE_STATE, &|d| Value::Integer(d.state.mib_value())),
            (FLEET_DEVICE_ACKED_GENERATION, &|d| {
                Value::Counter64(d.acked_generation)
            }),
            (FLEET_DEVICE_DESIRED_GENERATION, &|d| {
                Value::Counter64(d.desired_generation)
            }),
            (FLEET_DEVICE_LAST_SEEN, &|d| {
                Value::TimeTicks(clock.stamp(d.last_seen))
            }),
        ];
        for (column, cell) in columns {
            self.column(FLEET_DEVICE_ENTRY, column, &rows, |d| (d.index, cell(d)));
        }
    }

    fn finish(mut self) -> MibTree {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.objects.sort();
        debug_assert!(self.entries.windows(2).all(|w| w[0].0 < w[1].0));
        MibTree {
            entries: self.entries,
            objects: self.objects,
        }
    }
}

/// The rows a table serves: those with a valid index (never 0), in index order, the
/// first of rows sharing an index.
fn served_rows<R: Clone>(
    rows: &[R],
    index: impl Fn(&R) -> u32,
    valid: impl Fn(u32) -> bool,
) -> Vec<R> {
    let mut served: Vec<R> = rows
        .iter()
        .filter(|r| index(r) != 0 && valid(index(r)))
        .cloned()
        .collect();
    // A stable sort keeps the first of equal indices first, and dedup keeps it.
    served.sort_by_key(&index);
    served.dedup_by(|later, first| index(later) == index(first));
    if served.len() < rows.len() {
        tracing::debug!(
            rows = rows.len(),
            served = served.len(),
            "table rows with index 0, out of range or duplicated are not served"
        );
    }
    served
}

/// Gauge32: latches at its maximum.
pub(crate) fn gauge(n: u64) -> Value {
    Value::Gauge32(u32::try_from(n).unwrap_or(u32::MAX))
}

fn truth_value(b: bool) -> Value {
    Value::Integer(if b { 1 } else { 2 })
}

/// A DisplayString: at most 255 octets.
pub(crate) fn display_string(s: &str) -> Value {
    octets(s, 255)
}

/// Text cut to at most `max` octets, at a character boundary.
fn octets(s: &str, max: usize) -> Value {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Value::OctetString(s.as_bytes()[..end].to_vec().into())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::snapshot::{DeviceState, InterfaceCounters, SystemGroup};

    fn oid(s: &str) -> Oid {
        Oid::parse(s).unwrap()
    }

    fn clock() -> (Clock, Instant) {
        let start = Instant::now();
        (
            Clock::starting_at(start),
            start + Duration::from_millis(12_345),
        )
    }

    fn interface(index: u32, name: &str) -> Interface {
        Interface {
            index,
            name: name.into(),
            descr: format!("{name} port"),
            speed_bps: 25_000_000_000,
            mac: Some([2, 0, 0, 0, 0, index as u8]),
            counters: InterfaceCounters {
                in_octets: (1 << 32) + 7,
                ..InterfaceCounters::default()
            },
            ..Interface::default()
        }
    }

    fn snapshot() -> MibSnapshot {
        MibSnapshot {
            system: SystemGroup {
                name: "dpu-7".into(),
                ..SystemGroup::default()
            },
            interfaces: Some(vec![interface(2, "pf1"), interface(1, "pf0")]),
            device: Some(DeviceGroup {
                generation: 42,
                ..DeviceGroup::default()
            }),
            fleet: None,
        }
    }

    #[test]
    fn scalars_tables_and_types() {
        let (clock, now) = clock();
        let tree = MibTree::build(&snapshot(), clock, now);
        let get = |s: &str| match tree.get(&oid(s)) {
            Lookup::Value(v) => v.clone(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(get("1.3.6.1.2.1.1.3.0"), Value::TimeTicks(1234));
        assert_eq!(get("1.3.6.1.2.1.1.5.0"), Value::OctetString("dpu-7".into()));
        assert_eq!(get("1.3.6.1.2.1.2.1.0"), Value::Integer(2));
        assert_eq!(
            get("1.3.6.1.2.1.2.2.1.2.1"),
            Value::OctetString("pf0 port".into())
        );
        // 32-bit columns wrap, 64-bit ones do not; speeds saturate or scale.
        assert_eq!(get("1.3.6.1.2.1.2.2.1.10.1"), Value::Counter32(7));
        assert_eq!(
            get("1.3.6.1.2.1.31.1.1.1.6.1"),
            Value::Counter64((1 << 32) + 7)
        );
        assert_eq!(get("1.3.6.1.2.1.2.2.1.5.2"), Value::Gauge32(u32::MAX));
        assert_eq!(get("1.3.6.1.2.1.31.1.1.1.15.2"), Value::Gauge32(25_000));
        assert_eq!(get("1.3.6.1.4.1.32473.1.1.1.1.0"), Value::Counter64(42));
        assert_eq!(get("1.3.6.1.4.1.32473.1.1.1.10.0"), Value::Integer(2));
        assert_eq!(
            get("1.3.6.1.4.1.32473.1.1.1.2.0"),
            Value::OctetString(Vec::new().into())
        );
    }

    #[test]
    fn absent_objects_and_instances() {
        let (clock, now) = clock();
        let tree = MibTree::build(&snapshot(), clock, now);
        // A served column or scalar without that instance.
        assert_eq!(
            tree.get(&oid("1.3.6.1.2.1.2.2.1.2.3")),
            Lookup::NoSuchInstance
        );
        assert_eq!(tree.get(&oid("1.3.6.1.2.1.1.5.1")), Lookup::NoSuchInstance);
        assert_eq!(tree.get(&oid("1.3.6.1.2.1.1.5")), Lookup::NoSuchInstance);
        // An unserved column, the group the snapshot leaves out, and nothing at all.
        assert_eq!(
            tree.get(&oid("1.3.6.1.2.1.2.2.1.12.1")),
            Lookup::NoSuchObject
        );
        assert_eq!(
            tree.get(&oid("1.3.6.1.4.1.32473.1.1.2.1.0")),
            Lookup::NoSuchObject
        );
        assert_eq!(tree.get(&oid("1.3.6.1.2.1.1")), Lookup::NoSuchObject);
        assert_eq!(
            tree.get(&oid("1.3.6.1.4.1.32473.1.1.3.1.0")),
            Lookup::NoSuchObject
        );
    }

    #[test]
    fn rows_follow_index_order_and_tables_are_column_major() {
        let (clock, now) = clock();
        let mut snap = snapshot();
        snap.interfaces = Some(vec![
            interface(3, "c"),
            interface(0, "zero"),
            interface(1, "a"),
            interface(3, "duplicate"),
            interface(u32::MAX, "too big"),
        ]);
        let tree = MibTree::build(&snap, clock, now);
        let descrs: Vec<String> = tree
            .entries()
            .iter()
            .filter(|(o, _)| o.starts_with(&oid("1.3.6.1.2.1.2.2.1.2")))
            .map(|(o, v)| format!("{o}={}", String::from_utf8_lossy(v.as_bytes().unwrap())))
            .collect();
        assert_eq!(
            descrs,
            [
                "1.3.6.1.2.1.2.2.1.2.1=a port",
                "1.3.6.1.2.1.2.2.1.2.3=c port"
            ]
        );
        assert_eq!(
            tree.get(&oid("1.3.6.1.2.1.2.1.0")),
            Lookup::Value(&Value::Integer(2))
        );
        let after_descr = tree.next(&oid("1.3.6.1.2.1.2.2.1.2.3"), |_| true).unwrap();
        assert_eq!(after_descr.0, oid("1.3.6.1.2.1.2.2.1.3.1"));
    }

    #[test]
    fn fleet_counts_come_from_the_served_rows() {
        let (clock, now) = clock();
        let device = |index, state| FleetDevice {
            index,
            name: format!("dpu-{index}"),
            state,
            acked_generation: 1,
            desired_generation: 2,
            last_seen: Some(now - Duration::from_secs(2)),
        };
        let mut snap = snapshot();
        snap.device = None;
        snap.fleet = Some(FleetGroup {
            generation: 2,
            devices: vec![
                device(1, DeviceState::InSync),
                device(2, DeviceState::Failed),
                device(3, DeviceState::NeverConnected),
                device(0, DeviceState::InSync),
            ],
        });
        let tree = MibTree::build(&snap, clock, now);
        let get = |s: &str| match tree.get(&oid(s)) {
            Lookup::Value(v) => v.clone(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(get("1.3.6.1.4.1.32473.1.1.2.1.0"), Value::Gauge32(3));
        assert_eq!(get("1.3.6.1.4.1.32473.1.1.2.2.0"), Value::Gauge32(1));
        assert_eq!(get("1.3.6.1.4.1.32473.1.1.2.3.0"), Value::Gauge32(2));
        assert_eq!(get("1.3.6.1.4.1.32473.1.1.2.5.1.3.2"), Value::Integer(3));
        assert_eq!(
            get("1.3.6.1.4.1.32473.1.1.2.5.1.6.1"),
            Value::TimeTicks(1034)
        );
        assert_eq!(
            tree.get(&oid("1.3.6.1.4.1.32473.1.1.1.1.0")),
            Lookup::NoSuchObject
        );
    }

    #[test]
    fn timestamps_before_the_start_are_zero_and_ticks_wrap() {
        let start = Instant::now() + Duration::from_secs(10);
        let clock = Clock::starting_at(start);
        assert_eq!(clock.stamp(Some(Instant::now())), 0);
        assert_eq!(clock.stamp(None), 0);
        let wrap = Duration::from_millis(10 * (1 << 32) + 50);
        assert_eq!(clock.ticks(start + wrap), 5);
    }

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        let long = "é".repeat(200);
        let Value::OctetString(cut) = display_string(&long) else {
            unreachable!()
        };
        assert_eq!(cut.len(), 254);
        assert!(std::str::from_utf8(&cut).is_ok());
    }

    fn arb_snapshot() -> impl Strategy<Value = MibSnapshot> {
        let interface =
            (0u32..6, any::<u64>(), "[a-z]{0,4}").prop_map(|(index, octets, name)| Interface {
                index,
                name,
                counters: InterfaceCounters {
                    in_octets: octets,
                    ..InterfaceCounters::default()
                },
                ..Interface::default()
            });
        let device = (0u32..6, 0usize..5).prop_map(|(index, state)| FleetDevice {
            index,
            name: String::new(),
            state: [
                DeviceState::InSync,
                DeviceState::Behind,
                DeviceState::Failed,
                DeviceState::Disconnected,
                DeviceState::NeverConnected,
            ][state],
            acked_generation: 0,
            desired_generation: 0,
            last_seen: None,
        });
        (
            proptest::option::of(proptest::collection::vec(interface, 0..8)),
            proptest::option::of(any::<u64>()),
            proptest::option::of(proptest::collection::vec(device, 0..8)),
        )
            .prop_map(|(interfaces, generation, devices)| MibSnapshot {
                system: SystemGroup::default(),
                interfaces,
                device: generation.map(|generation| DeviceGroup {
                    generation,
                    ..DeviceGroup::default()
                }),
                fleet: devices.map(|devices| FleetGroup {
                    generation: 1,
                    devices,
                }),
            })
    }

    proptest! {
        /// A GETNEXT walk from the root visits every instance once, in increasing
        /// order, and GET answers each with the value the walk saw.
        #[test]
        fn walk_and_get_agree(snap in arb_snapshot()) {
            let (clock, now) = clock();
            let tree = MibTree::build(&snap, clock, now);
            let mut at = oid("1.3");
            let mut walked = 0;
            while let Some((next, value)) = tree.next(&at, |_| true) {
                prop_assert!(*next > at);
                prop_assert_eq!(tree.get(next), Lookup::Value(value));
                at = next.clone();
                walked += 1;
            }
            prop_assert_eq!(walked, tree.entries().len());
        }

        /// A walk restricted to a view sees exactly the instances of the full walk that
        /// the view contains.
        #[test]
        fn walk_in_a_view_is_the_filtered_walk(snap in arb_snapshot(), cut in 0usize..64) {
            let (clock, now) = clock();
            let tree = MibTree::build(&snap, clock, now);
            let all: Vec<&Oid> = tree.entries().iter().map(|(o, _)| o).collect();
            let hidden = all.get(cut % all.len().max(1)).map(|o| (*o).clone());
            let visible = |o: &Oid| hidden.as_ref().is_none_or(|h| !o.starts_with(h));
            let mut at = oid("0.0");
            let mut seen = Vec::new();
            while let Some((next, _)) = tree.next(&at, visible) {
                seen.push(next);
                at = next.clone();
            }
            let expected: Vec<&Oid> = all.into_iter().filter(|o| visible(o)).collect();
            prop_assert_eq!(seen, expected);
        }
    }
}
