//! A label change flips a live connection (root only): an established TCP connection that
//! the new intent denies stops carrying data at the next packet — the devices judge live
//! sessions again under each new program — while new connections follow the new intent.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use palisade_hil::{Expect, Lab, Scenario, is_root, wait_until};

#[test]
fn a_label_change_cuts_a_live_connection_it_now_denies() {
    if !is_root() {
        eprintln!("!!! SKIPPED: not root; the live-connection scenario did not run");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/three-tier");
    let scenario = Scenario::load(&dir.join("scenario.yaml")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let lab = Lab::start(&scenario, work.path()).unwrap();
    let web = lab.topology.hosts["shop/web-prod"].clone();
    let app = lab.topology.hosts["shop/app-prod"].clone();

    let received = work.path().join("received.txt");
    let mut listener = Command::new("ip")
        .args(["netns", "exec", &app.ns, "nc", "-l", "-k", "8080"])
        .stdout(std::fs::File::create(&received).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut client = Command::new("ip")
        .args(["netns", "exec", &web.ns, "nc", &app.ip.to_string(), "8080"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut to_app = client.stdin.take().unwrap();
    let got = |what: &str| {
        std::fs::read_to_string(&received)
            .unwrap_or_default()
            .contains(what)
    };
    writeln!(to_app, "before the change").unwrap();
    to_app.flush().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || got("before the change")),
        "the connection carries data\n{}",
        lab.logs()
    );

    // web-prod joins the dev deployment: web-prod -> app-prod is no longer allowed.
    let inventory = std::fs::read_to_string(dir.join(&scenario.inventory)).unwrap();
    let moved = inventory.replace(
        "  - name: web-prod\n    project: shop\n    tags: [deployment=prod]",
        "  - name: web-prod\n    project: shop\n    tags: [deployment=dev]",
    );
    assert_ne!(moved, inventory);
    let file = work.path().join("inventory-moved.yaml");
    std::fs::write(&file, moved).unwrap();
    lab.apply(&[&file]).unwrap();

    let _ = writeln!(to_app, "after the change");
    let _ = to_app.flush();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !got("after the change"),
        "the live connection still carries data after the change\n{}",
        lab.logs()
    );
    // New connections follow the new intent.
    let new = Expect::tcp("shop/web-prod", "shop/app-dev", 8080, true);
    assert!(lab.check(&new).unwrap().0, "{}", lab.logs());
    drop(to_app);
    let _ = client.kill();
    let _ = client.wait();
    let _ = listener.kill();
    let _ = listener.wait();
}
