//! `amanat quorum`: quorum keys, made offline on an air-gapped machine.

use super::{Done, Identity};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct QuorumArgs {
    #[command(subcommand)]
    action: QuorumAction,
}

#[derive(Subcommand)]
enum QuorumAction {
    /// Offline: a new quorum key, K of N holders, each share sealed to its holder.
    Init(InitArgs),
    /// Offline, with K holders present: new shares of the same quorum key for a new
    /// holder set or threshold; the old shares stop counting with the new quorum.pub.
    Reshare(ReshareArgs),
    /// Offline, with K holders present: checks that the shares brought rebuild the key
    /// `quorum.pub` names (the ceremony's last step, before the server uses it); writes
    /// nothing.
    Check(CheckArgs),
}

/// The holder set a quorum is made (or reshared) for, and where it is written.
#[derive(Args)]
struct HolderSet {
    /// How many holders must bring their shares to open anything.
    #[arg(long, value_name = "K")]
    threshold: usize,
    /// A holder's own age recipient (age1...); once per holder, in order.
    #[arg(long = "holder", value_name = "AGE1", required = true)]
    holders: Vec<String>,
    /// A new folder: quorum.pub, one N.share per holder, ceremony.txt.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args)]
struct InitArgs {
    #[command(flatten)]
    to: HolderSet,
}

#[derive(Args)]
struct ReshareArgs {
    /// The K present holders: --quorum OLD/quorum.pub, then each --share with its
    /// holder's --identity.
    #[command(flatten)]
    present: Identity,
    /// The new holders (the recipient stays the same).
    #[command(flatten)]
    to: HolderSet,
}

#[derive(Args)]
struct CheckArgs {
    /// The quorum's --quorum quorum.pub, then each --share with its holder's --identity.
    #[command(flatten)]
    present: Identity,
}

/// Writes a quorum made or reshared, and says so.
fn written(made: &amanat::keys::quorum::Made, out: &std::path::Path) -> Result<(), String> {
    amanat::keys::quorum::write(made, out)
        .map_err(|e| format!("the quorum could not be written to {}: {e}", out.display()))?;
    println!("{}", made.public.recipient);
    eprintln!(
        "quorum of {} of {} written to {}: hand each N.share to holder N (only they can open \
         it) and keep ceremony.txt with the coalition's records",
        made.public.threshold,
        made.public.holders.len(),
        out.display()
    );
    Ok(())
}

pub fn quorum(args: &QuorumArgs) -> Done {
    match &args.action {
        QuorumAction::Init(init) => {
            let made = amanat::keys::quorum::init(init.to.threshold, &init.to.holders)
                .map_err(|e| format!("no quorum made: {e}"))?;
            written(&made, &init.to.out)?;
            eprintln!("put quorum.pub beside keys/recipients.txt and its lines in that file");
            Ok(ExitCode::SUCCESS)
        }
        QuorumAction::Check(check) => {
            let holders = check.present.holders()?;
            let brought = holders.brought();
            // `rebuild` refuses unless the shares combine to the very recipient quorum.pub
            // names; the rebuilt key is dropped (and wiped) straight after.
            drop(
                amanat::keys::quorum::rebuild(&holders.public, &brought)
                    .map_err(|e| format!("the quorum does not hold: {e}"))?,
            );
            println!(
                "{}: the {} shares brought rebuild this quorum's key; nothing was written",
                holders.public.recipient,
                brought.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        QuorumAction::Reshare(reshare) => {
            let holders = reshare.present.holders()?;
            let made = amanat::keys::quorum::reshare(
                &holders.public,
                &holders.brought(),
                reshare.to.threshold,
                &reshare.to.holders,
            )
            .map_err(|e| format!("not reshared: {e}"))?;
            written(&made, &reshare.to.out)?;
            eprintln!(
                "the recipient is unchanged: replace the server's quorum.pub with the new one; \
                 every old holder destroys their old share (with the old quorum.pub, enough of \
                 them would still open everything)"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
