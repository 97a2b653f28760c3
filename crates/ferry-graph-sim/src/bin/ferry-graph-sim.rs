//! Runs a simulated Entra tenant behind a Microsoft Graph look-alike until killed, for trying
//! ferry's `kind = "graph"` directories without a tenant and for the Graph benchmark.
//!
//! ```text
//! ferry-graph-sim [--listen 127.0.0.1:0] [--users N] [--groups N] [--devices N] [--tag HEX]
//!                 [--tenant ID] [--domain D] [--client-id ID] [--client-secret S]
//!                 [--throttle-every N] [--retry-after SECONDS]
//! ```
//! Prints `ferry-graph-sim listening on http://ADDR` once it accepts connections.

use ferry_graph_sim::{GraphSim, SimOptions};

fn main() {
    let mut opts = SimOptions::default();
    let (mut listen, mut users, mut groups, mut devices, mut tag) =
        ("127.0.0.1:0".to_string(), 0u64, 0u64, 0u64, 0xc0u32);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(v) = it.next() else {
            eprintln!("ferry-graph-sim: {flag} needs a value");
            std::process::exit(2);
        };
        let num = |v: &str| {
            v.parse::<u64>().unwrap_or_else(|_| {
                eprintln!("ferry-graph-sim: {flag}: `{v}` is not a number");
                std::process::exit(2)
            })
        };
        match flag.as_str() {
            "--listen" => listen = v.clone(),
            "--users" => users = num(v),
            "--groups" => groups = num(v),
            "--devices" => devices = num(v),
            "--tag" => tag = u32::from_str_radix(v, 16).unwrap_or(tag),
            "--tenant" => opts.tenant = v.clone(),
            "--domain" => opts.domain = v.clone(),
            "--client-id" => opts.client_id = v.clone(),
            "--client-secret" => opts.client_secret = v.clone(),
            "--throttle-every" => opts.throttle_every = num(v),
            "--retry-after" => opts.retry_after = v.clone(),
            _ => {
                eprintln!("ferry-graph-sim: unknown flag {flag}");
                std::process::exit(2);
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry-graph-sim: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async {
        let sim = match GraphSim::start(opts, &listen).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ferry-graph-sim: cannot listen on {listen}: {e}");
                std::process::exit(1);
            }
        };
        sim.populate(tag, users, groups, devices);
        println!("ferry-graph-sim listening on {}", sim.url());
        let _ = tokio::signal::ctrl_c().await;
    });
}
