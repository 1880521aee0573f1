//! Several "hosts" on this one Linux machine, for tests of a partnership spread over hosts:
//! one network namespace per host, joined by a bridge in the root namespace.
//!
//! A process in a host's namespace sees only that host's loopback and its one address on the
//! bridge, so a service that listens on `127.0.0.1` there is out of reach of the other hosts,
//! as it would be on a real machine, and a service must be given an address the others can
//! reach. The bridge holds the subnet's first address (the [`Net::gateway`]), so the test
//! process itself, in the root namespace, reaches every host. Hosts get no default route:
//! they reach each other and the test process, nothing else.
//!
//! Everything a [`Net`] makes starts with [`Net::prefix`], `hubt` and a random tag, so tests
//! running in parallel (and what a crashed run left behind) never share a name; its /24 in
//! 10.0.0.0/8 is checked against the routing table after it is claimed, and another is
//! tried on a collision. Dropping the `Net` (even while a test panics) kills every process
//! inside its namespaces and removes the namespaces, veths and bridge. A run killed outright
//! leaves them; a later `Net::create` removes such leftovers once they are an hour old (by
//! the bridge's alias), and at once namespaces whose bridge is gone.
//!
//! It runs `ip` (iproute2) and needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN). Without
//! them `Net::create` fails and says why: a test that needs hosts fails, it is never skipped.
//!
//! A machine whose firewall drops forwarded packets (Docker sets the FORWARD policy to DROP)
//! with `net.bridge.bridge-nf-call-iptables=1` drops packets between hosts too, though the
//! test process still reaches them: the harness's own test then fails where alpha reaches
//! the broker.

use std::{
    ffi::OsStr,
    net::Ipv4Addr,
    path::PathBuf,
    process::Output,
    sync::OnceLock,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};

/// What every name this harness makes starts with; the leftover sweep looks for nothing else.
const PREFIX: &str = "hubt";
/// How old a leftover must be before a later run removes it: no test runs this long, so a
/// `Net` this old belongs to a run that died without dropping it.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// One host: a network namespace with one address on the bridge.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// The namespace's name, for `ip netns exec` and `ip -n`.
    pub ns: String,
    pub addr: Ipv4Addr,
}

/// Hosts in network namespaces on a bridge; dropping it removes them (see the module doc).
#[derive(Debug)]
pub struct Net {
    /// `hubt` and the tag: the start of every name this `Net` made.
    prefix: String,
    gateway: Ipv4Addr,
    hosts: Vec<Host>,
    /// The root namespace's ends of the veths made so far, removed by name on drop (a
    /// listing of links can miss some while other namespaces come and go).
    veths: Vec<String>,
}

impl Net {
    /// One namespace per name in `hosts` (lower-case letters, digits and `-`), each with
    /// loopback up and a veth to a fresh bridge on a fresh /24. The error says that network
    /// namespaces could not be made, and why.
    pub fn create(hosts: &[&str]) -> anyhow::Result<Net> {
        Net::make(hosts).context("network namespaces for the test's hosts could not be made")
    }

    fn make(hosts: &[&str]) -> anyhow::Result<Net> {
        check_names(hosts)?;
        ip_program()?;
        sweep_stale();
        let mut net = Net::claim_bridge()?;
        // From here on, dropping `net` removes whatever was made when a step fails.
        net.gateway = net.claim_subnet()?;
        for (i, name) in hosts.iter().enumerate() {
            net.add_host(i, name)?;
        }
        Ok(net)
    }

    /// The host called `name`; panics if the `Net` has none, as that is a mistake in the test.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.name == name).unwrap_or_else(|| panic!("no host {name:?} in this Net"))
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The bridge's address: where the test process is, seen from the hosts.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The start of every namespace and interface name this `Net` made.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `program` inside `host`'s namespace (`ip netns exec NS program`); the caller adds
    /// arguments and environment and spawns it. `ip` execs the program, so the child is the
    /// program itself. Killed when its `Child` drops (`kill_on_drop`), and, with anything it
    /// started in the namespace, when the `Net` drops.
    pub fn command(&self, host: &str, program: impl AsRef<OsStr>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(ip_program().map(|p| p.as_os_str()).unwrap_or(OsStr::new("ip")));
        command.args(["netns", "exec", &self.host(host).ns]).arg(program).kill_on_drop(true);
        command
    }

    /// A bridge with a fresh random tag: `ip link add` fails on a name in use, so the tag is
    /// this `Net`'s alone once the bridge exists. The bridge is made first and removed last,
    /// so a namespace of this harness without its bridge is a leftover.
    fn claim_bridge() -> anyhow::Result<Net> {
        for _ in 0..20 {
            let prefix = format!("{PREFIX}{:06x}", rand::random::<u32>() & 0xff_ffff);
            let bridge = format!("{prefix}br");
            let made = ip(&["link", "add", &bridge, "type", "bridge", "forward_delay", "0"]);
            if made.as_ref().is_err_and(|e| format!("{e:#}").contains("File exists")) {
                continue;
            }
            made?;
            let net = Net { prefix, gateway: Ipv4Addr::UNSPECIFIED, hosts: Vec::new(), veths: Vec::new() };
            // The alias dates the bridge for the leftover sweep (the kernel ignores an alias
            // given to `ip link add`).
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            ip(&["link", "set", &bridge, "alias", &format!("hub tests netns harness pid={} made={now}", std::process::id())])?;
            ip(&["link", "set", &bridge, "up"])?;
            return Ok(net);
        }
        bail!("20 random bridge names were all in use")
    }

    /// A random 10.x.y.0/24 that no route of this machine overlaps, its first address on the
    /// bridge. Checked again after the address is added, as another run may have picked the
    /// same /24 at the same moment; then it is given up (by both runs, maybe) for another.
    fn claim_subnet(&self) -> anyhow::Result<Ipv4Addr> {
        let bridge = self.bridge();
        for _ in 0..20 {
            let gateway = Ipv4Addr::new(10, rand::random(), rand::random(), 1);
            if subnet_taken(gateway, &bridge)? {
                continue;
            }
            ip(&["addr", "add", &format!("{gateway}/24"), "dev", &bridge])?;
            if !subnet_taken(gateway, &bridge)? {
                return Ok(gateway);
            }
            ip(&["addr", "del", &format!("{gateway}/24"), "dev", &bridge])?;
        }
        bail!("20 random /24s in 10.0.0.0/8 all overlapped this machine's routes")
    }

    /// Host `i`: namespace, loopback, a veth whose inner end is its `eth0` and whose outer end
    /// is a port of the bridge, and the /24's address `i + 2`.
    fn add_host(&mut self, i: usize, name: &str) -> anyhow::Result<()> {
        let [a, b, c, _] = self.gateway.octets();
        let host = Host { name: name.to_owned(), ns: format!("{}-{name}", self.prefix), addr: Ipv4Addr::new(a, b, c, u8::try_from(i + 2)?) };
        let veth = format!("{}v{i}", self.prefix);
        ip(&["netns", "add", &host.ns])?;
        self.hosts.push(host.clone());
        ip(&["-n", &host.ns, "link", "set", "lo", "up"])?;
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &host.ns])?;
        self.veths.push(veth.clone());
        ip(&["link", "set", &veth, "master", &self.bridge()])?;
        ip(&["link", "set", &veth, "up"])?;
        ip(&["-n", &host.ns, "addr", "add", &format!("{}/24", host.addr), "dev", "eth0"])?;
        ip(&["-n", &host.ns, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }
}

/// Blocks while it runs `ip` a few times per host: that works inside or outside a runtime and
/// while a test panics, as an async drop would not.
impl Drop for Net {
    fn drop(&mut self) {
        let namespaces: Vec<String> = self.hosts.iter().map(|h| h.ns.clone()).collect();
        if let Err(e) = remove(&namespaces, &self.veths, Some(&self.bridge())) {
            eprintln!("warning: could not remove the test network {}*: {e:#}", self.prefix);
        }
    }
}

/// Host names become namespace names and must tell the hosts apart.
fn check_names(hosts: &[&str]) -> anyhow::Result<()> {
    anyhow::ensure!((1..=250).contains(&hosts.len()), "a Net has 1 to 250 hosts, not {}", hosts.len());
    for (i, name) in hosts.iter().enumerate() {
        let good = (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        anyhow::ensure!(good, "host name {name:?}: 1 to 32 lower-case letters, digits or '-'");
        anyhow::ensure!(!hosts[..i].contains(name), "host name {name:?} given twice");
    }
    Ok(())
}

/// Removes one `Net`: first the processes inside its namespaces (else a namespace lives on,
/// name or not, while a process holds it), then its veths (at once: a namespace's own end
/// goes only when the kernel gets round to destroying the namespace), its namespaces, and
/// its bridge last.
fn remove(namespaces: &[String], veths: &[String], bridge: Option<&str>) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for ns in namespaces {
        if let Err(e) = kill_all(ns) {
            failed.push(format!("{e:#}"));
        }
    }
    let veths = veths.iter().map(|v| ["link", "del", v.as_str()]);
    let namespaces = namespaces.iter().map(|ns| ["netns", "del", ns.as_str()]);
    let bridge = bridge.map(|b| ["link", "del", b]);
    for args in veths.chain(namespaces).chain(bridge) {
        if let Err(e) = ip(&args) {
            failed.push(format!("{e:#}"));
        }
    }
    anyhow::ensure!(failed.is_empty(), "{}", failed.join("; "));
    Ok(())
}

/// SIGKILLs every process in namespace `ns` and waits (up to 5 s) until none is left.
fn kill_all(ns: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = ip(&["netns", "pids", ns])?;
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("processes {pids:?} in namespace {ns} outlived SIGKILL for 5 s");
        }
        // A process may exit between listing and killing; the next round sees what is left.
        let _ = std::process::Command::new("kill").arg("-KILL").args(&pids).output();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes what runs of this harness left behind: a bridge over an hour old (by its alias)
/// and every namespace of a tag whose bridge is gone. Best effort: a failure here only
/// leaves names that no later run uses.
fn sweep_stale() {
    let sweep = || -> anyhow::Result<()> {
        // Namespaces first: a `Net` makes its bridge before its namespaces and removes it
        // after them, so a namespace listed here whose bridge is missing below is a leftover.
        let namespaces = namespaces()?;
        let links = links()?;
        let bridges: Vec<_> = links.iter().filter(|(name, _)| name.ends_with("br")).collect();
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let mut stale: Vec<String> = Vec::new();
        for (name, alias) in &bridges {
            let made = alias.rsplit_once("made=").and_then(|(_, t)| t.parse::<u64>().ok());
            if let (Some(prefix), Some(made)) = (tag_prefix(name), made) {
                if now.saturating_sub(made) > STALE_AFTER.as_secs() {
                    stale.push(prefix.to_owned());
                }
            }
        }
        for ns in &namespaces {
            if let Some(prefix) = tag_prefix(ns) {
                if !bridges.iter().any(|(b, _)| b.starts_with(prefix)) && !stale.iter().any(|s| s == prefix) {
                    stale.push(prefix.to_owned());
                }
            }
        }
        for prefix in stale {
            eprintln!("removing the test network {prefix}* an earlier run left behind");
            let ours = |names: Vec<&String>| names.into_iter().filter(|n| n.starts_with(&prefix)).cloned().collect::<Vec<String>>();
            let veths = ours(links.iter().map(|(n, _)| n).filter(|n| !n.ends_with("br")).collect());
            let bridge = bridges.iter().find(|(b, _)| b.starts_with(&prefix)).map(|(b, _)| b.as_str());
            if let Err(e) = remove(&ours(namespaces.iter().collect()), &veths, bridge) {
                eprintln!("warning: could not remove the test network {prefix}*: {e:#}");
            }
        }
        Ok(())
    };
    if let Err(e) = sweep() {
        eprintln!("warning: could not remove earlier test networks: {e:#}");
    }
}

/// `hubt` and the 6-digit tag, when `name` is one of this harness's.
fn tag_prefix(name: &str) -> Option<&str> {
    let prefix = name.get(..PREFIX.len() + 6)?;
    (prefix.starts_with(PREFIX) && prefix[PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit())).then_some(prefix)
}

/// The names of every network namespace `ip netns` knows.
fn namespaces() -> anyhow::Result<Vec<String>> {
    let list = json(&["-j", "netns", "list"])?;
    Ok(list.iter().filter_map(|n| n["name"].as_str().map(str::to_owned)).collect())
}

/// Every link of the root namespace whose name is one of this harness's, with its alias.
fn links() -> anyhow::Result<Vec<(String, String)>> {
    let list = json(&["-j", "link", "show"])?;
    let named = list.iter().filter_map(|l| Some((l["ifname"].as_str()?.to_owned(), l["ifalias"].as_str().unwrap_or_default().to_owned())));
    Ok(named.filter(|(name, _)| tag_prefix(name).is_some()).collect())
}

/// Whether a route of this machine on a device other than `bridge` overlaps the /24 of
/// `addr`. The default route does not count: the bridge's /24 is more specific.
fn subnet_taken(addr: Ipv4Addr, bridge: &str) -> anyhow::Result<bool> {
    let ours = u32::from(addr) & 0xffff_ff00;
    let routes = json(&["-j", "-4", "route", "show", "table", "all"])?;
    Ok(routes.iter().any(|route| {
        let (Some(dst), dev) = (route["dst"].as_str(), route["dev"].as_str().unwrap_or_default()) else { return false };
        let (net, len) = dst.split_once('/').unwrap_or((dst, "32"));
        let (Ok(net), Ok(len)) = (net.parse::<Ipv4Addr>(), len.parse::<u32>()) else { return false };
        let mask = |bits: u32| if bits == 0 { 0 } else { u32::MAX << (32 - bits.min(32)) };
        let common = mask(len.min(24));
        dev != bridge && (u32::from(net) & common) == (ours & common)
    }))
}

/// Where `ip` is (the tests may run with a PATH that lacks /usr/sbin), or why not.
fn ip_program() -> anyhow::Result<&'static PathBuf> {
    static IP: OnceLock<Option<PathBuf>> = OnceLock::new();
    IP.get_or_init(|| {
        let on_path = std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("ip")).find(|p| p.is_file()));
        on_path.or_else(|| ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].into_iter().map(PathBuf::from).find(|p| p.is_file()))
    })
    .as_ref()
    .context("the `ip` command is not installed: install Debian's package iproute2 (deploy/test.sh does when it may)")
}

/// Runs `ip args` and returns its standard output.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&ip_output(args)?.stdout).into_owned())
}

/// Runs `ip args`; the error quotes its standard error and says which capability this
/// process lacks, if any.
fn ip_output(args: &[&str]) -> anyhow::Result<Output> {
    let output = std::process::Command::new(ip_program()?).args(args).output().with_context(|| format!("running ip {}", args.join(" ")))?;
    if !output.status.success() {
        let hint = lacking_capabilities().map(|lack| format!(" ({lack})")).unwrap_or_default();
        bail!("`ip {}` failed ({}): {}{hint}", args.join(" "), output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(output)
}

/// What this process lacks to make namespaces, from its effective capabilities: not root,
/// or root without them (a container run without `--privileged`, say).
fn lacking_capabilities() -> Option<String> {
    const NET_ADMIN: u32 = 12;
    const SYS_ADMIN: u32 = 21;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let effective = u64::from_str_radix(field("CapEff:")?, 16).ok()?;
    let uid = field("Uid:")?.split_whitespace().next()?;
    let lacking: Vec<&str> = [(NET_ADMIN, "CAP_NET_ADMIN"), (SYS_ADMIN, "CAP_SYS_ADMIN")].into_iter().filter(|(bit, _)| effective & (1 << bit) == 0).map(|(_, name)| name).collect();
    (!lacking.is_empty()).then(|| format!("this process, uid {uid}, lacks {}: network namespaces need root with CAP_NET_ADMIN and CAP_SYS_ADMIN", lacking.join(" and ")))
}

/// `ip -j ...`'s JSON array (`ip` prints nothing at all when the list is empty). A dump the
/// kernel interrupted, because links or routes changed meanwhile (other tests' namespaces
/// come and go), may lack entries and is taken again.
fn json(args: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    for _ in 0..10 {
        let output = ip_output(args)?;
        if String::from_utf8_lossy(&output.stderr).contains("Dump was interrupted") {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let out = String::from_utf8_lossy(&output.stdout);
        if out.trim().is_empty() {
            return Ok(Vec::new());
        }
        return serde_json::from_str(&out).with_context(|| format!("parsing the output of ip {}", args.join(" ")));
    }
    bail!("`ip {}` was interrupted 10 times running", args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_must_be_usable_and_distinct() {
        for (hosts, ok) in [
            (&["broker", "alpha", "beta-2"][..], true),
            (&[][..], false),
            (&["Alpha"][..], false),
            (&["a b"][..], false),
            (&["alpha", "alpha"][..], false),
            (&["a-very-long-host-name-of-33-chars"][..], false),
        ] {
            assert_eq!(check_names(hosts).is_ok(), ok, "{hosts:?}");
        }
    }

    #[test]
    fn only_this_harness_names_carry_a_tag() {
        for (name, tag) in [("hubt0a1b2c-broker", Some("hubt0a1b2c")), ("hubt0a1b2cbr", Some("hubt0a1b2c")), ("hubtzzzzzz-x", None), ("hub", None), ("docker0", None)] {
            assert_eq!(tag_prefix(name), tag, "{name}");
        }
    }
}
