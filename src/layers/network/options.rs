//! The network layer's options on lab's command line (`--subnet`, `--publish`),
//! flattened into every subcommand that builds a step (cli.rs), and checked
//! here against the step. The same struct is what the layer keeps in the Spec
//! (`spec.network`), with the address `reserve` (bridge.rs) adds to it.

use super::{Publish, Subnet, LAYER};
use anyhow::{bail, Result};
use std::net::Ipv4Addr;

/// What the student chose for the network (flags), and what lab reserved.
#[derive(clap::Args, Clone, Debug, Default)]
#[group(id = "network")]
pub struct Options {
    /// Step 5: the subnet of the bridge lab0 [default: the one lab0 has, else the
    /// first of 10.200.0.0/24, 10.200.1.0/24, ... that no route of the host covers]
    #[arg(long, value_name = "CIDR", value_parser = Subnet::parse)]
    pub subnet: Option<Subnet>,
    /// Step 5: forward the host's TCP port to the container's (DNAT), like docker -p;
    /// may be given several times
    #[arg(long, short = 'p', value_name = "HOSTPORT:CONTAINERPORT", value_parser = Publish::parse)]
    pub publish: Vec<Publish>,
    /// The container's address, once reserved (lab step); lab explain shows the
    /// first. Not an option: lab chooses it.
    #[arg(skip)]
    pub address: Option<Ipv4Addr>,
}

impl Options {
    /// Before this layer's step there is no network to set up: say so rather
    /// than ignore the options.
    pub fn check(&self, step: u8) -> Result<()> {
        let network = LAYER.number;
        if step < network && (self.subnet.is_some() || !self.publish.is_empty()) {
            bail!("--subnet and --publish belong to step {network} (network) and later");
        }
        Ok(())
    }
}
