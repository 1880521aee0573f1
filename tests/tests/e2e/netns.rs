//! The hosts harness itself ([`tests::netns`]): hosts reach a broker on another host and each
//! other's addresses over the bridge, the test process reaches them too, a loopback listener
//! stays private to its host, and dropping the `Net` leaves nothing behind.

use std::{net::Ipv4Addr, path::Path, process::Stdio, time::Duration};

use anyhow::Context as _;
use tests::{eventually, netns::Net};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    net::TcpStream,
    process::Child,
};

/// The same port on every host: each namespace has its own, as separate machines would.
const PORT: u16 = 4222;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_reach_each_other_over_the_bridge_and_nothing_more() -> anyhow::Result<()> {
    let net = Net::create(&["broker", "alpha", "beta"])?;
    let (broker, beta) = (net.host("broker").addr, net.host("beta").addr);
    // Server names unique to this run, so an answer is known to come from this run's server.
    let name = |what: &str| format!("{}-{what}", net.prefix());
    let store = tempfile::Builder::new().prefix("hubtest").tempdir()?;
    let mut server = nats_server(&net, "broker", broker, PORT, &name("broker"), Some(store.path()))?;

    // (b) The test process, in the root namespace, reaches the broker at its address: the
    // INFO line, then a publish it receives back and a JetStream message stored and acked.
    let info = eventually("nats-server answering at the broker's address", Duration::from_secs(15), || async { info_from_root(broker, PORT).await.map(Some) }).await?;
    assert!(info.contains(&format!("\"server_name\":\"{}\"", name("broker"))), "{info}");
    let client = async_nats::connect(format!("nats://{broker}:{PORT}")).await?;
    let mut messages = client.subscribe("netns.check").await?;
    client.publish("netns.check", "over the bridge".into()).await?;
    client.flush().await?;
    let message = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut messages)).await?.context("subscription closed")?;
    assert_eq!(&message.payload[..], b"over the bridge");
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config { name: "CHECK".into(), subjects: vec!["check.>".into()], ..Default::default() }).await?;
    let ack = js.publish("check.one", "stored".into()).await?.await?;
    assert_eq!((ack.stream.as_str(), ack.sequence), ("CHECK", 1));

    // (a) A process in another host reaches it at the broker's address.
    let line = first_line(&net, "alpha", broker, PORT).await?;
    assert!(line.status.success(), "alpha could not reach the broker: {}", String::from_utf8_lossy(&line.stderr));
    let text = String::from_utf8_lossy(&line.stdout);
    assert!(text.starts_with("INFO ") && text.contains(&name("broker")), "alpha read {text:?}");

    // (c) It listens on the bridge network only: the root namespace's loopback has no such
    // server (nothing answers there, or something other than this run's server).
    if let Ok(local) = info_from_root(Ipv4Addr::LOCALHOST, PORT).await {
        assert!(!local.contains(&name("broker")), "the broker answered on the root namespace's 127.0.0.1: {local}");
    }

    // (d) A listener on beta's loopback is beta's alone, though alpha reaches beta's address.
    let _beta_loopback = nats_server(&net, "beta", Ipv4Addr::LOCALHOST, PORT, &name("beta-loopback"), None)?;
    let _beta_public = nats_server(&net, "beta", beta, PORT + 1, &name("beta-public"), None)?;
    let seen = eventually("beta reaching its loopback listener", Duration::from_secs(15), || async {
        let line = first_line(&net, "beta", Ipv4Addr::LOCALHOST, PORT).await?;
        Ok(line.status.success().then(|| String::from_utf8_lossy(&line.stdout).into_owned()))
    })
    .await?;
    assert!(seen.contains(&name("beta-loopback")), "beta read {seen:?}");
    let public = eventually("alpha reaching beta's address", Duration::from_secs(15), || async {
        let line = first_line(&net, "alpha", beta, PORT + 1).await?;
        Ok(line.status.success().then(|| String::from_utf8_lossy(&line.stdout).into_owned()))
    })
    .await?;
    assert!(public.contains(&name("beta-public")), "alpha read {public:?} at {beta}:{}", PORT + 1);
    let private = first_line(&net, "alpha", beta, PORT).await?;
    let stderr = String::from_utf8_lossy(&private.stderr);
    assert!(!private.status.success() && stderr.contains("Connection refused"), "alpha at beta's {beta}:{PORT}: {:?}, {stderr}", String::from_utf8_lossy(&private.stdout));

    // (e) Dropping the Net kills what runs inside and removes its namespaces and links.
    let prefix = net.prefix().to_owned();
    let namespaces: Vec<String> = net.hosts().iter().map(|h| h.ns.clone()).collect();
    let listed = ip(&["netns", "list"]).await?;
    assert!(namespaces.iter().all(|ns| listed.contains(ns.as_str())), "{namespaces:?} not all in {listed}");
    drop(net);
    let listed = ip(&["netns", "list"]).await?;
    assert!(namespaces.iter().all(|ns| !listed.contains(ns.as_str())), "{namespaces:?} still listed after the drop: {listed}");
    let links = ip(&["-o", "link", "show"]).await?;
    assert!(!links.contains(&prefix), "links of {prefix} after the drop: {links}");
    let status = tokio::time::timeout(Duration::from_secs(5), server.wait()).await.context("the broker still ran after the Net dropped")??;
    assert!(!status.success(), "the broker was killed, not stopped of itself: {status}");
    Ok(())
}

/// nats-server inside `host` on `addr:port` only, named `name`, with JetStream when given a
/// store.
fn nats_server(net: &Net, host: &str, addr: Ipv4Addr, port: u16, name: &str, store: Option<&Path>) -> anyhow::Result<Child> {
    let mut command = net.command(host, hub::nats::ensure_installed()?);
    command.args(["-a", &addr.to_string(), "-p", &port.to_string(), "-n", name]);
    if let Some(store) = store {
        command.arg("-js").arg("-sd").arg(store);
    }
    Ok(command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?)
}

/// The first line a TCP server at `addr:port` sends, read by bash inside `host`.
async fn first_line(net: &Net, host: &str, addr: Ipv4Addr, port: u16) -> anyhow::Result<std::process::Output> {
    let mut command = net.command(host, "bash");
    command.args(["-c", "exec 3<>/dev/tcp/$0/$1 && head -n 1 <&3", &addr.to_string(), &port.to_string()]);
    let output = command.stdin(Stdio::null()).output();
    Ok(tokio::time::timeout(Duration::from_secs(10), output).await.context("bash in a host still read after 10 s")??)
}

/// The first line a TCP server at `addr:port` sends, read from the test process.
async fn info_from_root(addr: Ipv4Addr, port: u16) -> anyhow::Result<String> {
    let read = async {
        let mut line = String::new();
        BufReader::new(TcpStream::connect((addr, port)).await?).read_line(&mut line).await?;
        anyhow::Ok(line)
    };
    tokio::time::timeout(Duration::from_secs(5), read).await?
}

/// `ip args`'s output, taken again while the kernel interrupts the dump (other tests'
/// namespaces coming and going), as an interrupted dump may lack entries.
async fn ip(args: &[&str]) -> anyhow::Result<String> {
    for _ in 0..10 {
        let output = tokio::process::Command::new("ip").args(args).output().await?;
        anyhow::ensure!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        if !String::from_utf8_lossy(&output.stderr).contains("Dump was interrupted") {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
    }
    anyhow::bail!("ip {} was interrupted 10 times running", args.join(" "))
}
