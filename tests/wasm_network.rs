//! Network grants, attacked from the plugin's side: a WASM dataset that opens
//! a TCP connection in `load`. Denied by default; `connect = ["host:port"]`
//! allows exactly that address and port. Only loopback listeners are used.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::Sandbox;
use llem_integration_tests::{loader, wasm_artifact};
use llem_sdk::{LoadRequest, PromptBody};
use serde_json::{Map, Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

fn cfg(addr: &str) -> Map<String, Value> {
    match json!({"stall": "none", "how": "sleep", "target": "", "connect": addr}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn request() -> LoadRequest {
    LoadRequest {
        model: "m".into(),
        tokenizer_path: None,
        seed: 0,
        limit: None,
    }
}

/// A loopback listener that answers one connection with a greeting and
/// reports what the client said.
fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

fn serve_one(l: TcpListener) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (mut stream, _) = l.accept().unwrap();
        let mut line = String::new();
        BufReader::new(stream.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        stream.write_all(b"greetings from 127.0.0.1\n").unwrap();
        line
    })
}

/// Nobody connected to `l` (checked without blocking).
fn untouched(l: &TcpListener) -> bool {
    l.set_nonblocking(true).unwrap();
    matches!(l.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn a_granted_address_can_be_reached_and_nothing_else() {
    let (allowed, allowed_addr) = listener();
    let (other, other_addr) = listener();
    let sandbox = Sandbox {
        connect: vec![allowed_addr.clone()],
        ..Sandbox::default()
    };
    let plugin = loader().load(&wasm_artifact("dataset-stall")).unwrap();

    // Inside the allow-list: the connection works both ways.
    let server = serve_one(allowed);
    let mut d = plugin.open_dataset(&cfg(&allowed_addr), &sandbox).unwrap();
    let prompts = d.load(&request()).unwrap();
    assert_eq!(
        prompts[0].body,
        PromptBody::Text("greetings from 127.0.0.1".into())
    );
    assert_eq!(server.join().unwrap(), "hello from the plugin\n");

    // Another port on the same host: refused, and the listener never sees it.
    let mut d = plugin.open_dataset(&cfg(&other_addr), &sandbox).unwrap();
    let err = d.load(&request()).unwrap_err();
    assert!(
        err.message.contains(&format!("connecting to {other_addr}")),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        untouched(&other),
        "a connection reached a port that was not granted"
    );
}

#[test]
fn no_grant_no_network() {
    let (l, addr) = listener();
    let plugin = loader().load(&wasm_artifact("dataset-stall")).unwrap();
    let mut d = plugin
        .open_dataset(&cfg(&addr), &Sandbox::default())
        .unwrap();
    let err = d.load(&request()).unwrap_err();
    assert!(
        err.message.contains(&format!("connecting to {addr}")),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(50));
    assert!(untouched(&l));
}

#[test]
fn a_malformed_grant_is_refused_when_the_plugin_is_opened() {
    let plugin = loader().load(&wasm_artifact("dataset-stall")).unwrap();
    let sandbox = Sandbox {
        connect: vec!["127.0.0.1".into()],
        ..Sandbox::default()
    };
    let err = plugin
        .open_dataset(&cfg(""), &sandbox)
        .err()
        .expect("a grant without a port is an error");
    assert!(err.message.contains("host:port"), "{err}");
}
