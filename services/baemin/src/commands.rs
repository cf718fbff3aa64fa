//! What each command does: one gRPC call (or stream) and a printed answer.

use std::process::ExitCode;

use anyhow::{Context, bail};
use baemin_proto::{call::v1 as call, payment::v1 as payment, report::v1 as report, rider::v1 as rider};
use futures::StreamExt;

use crate::{
    cli::{CallCommand, Cli, Command, DeadLetterCommand, ListArgs, PaymentCommand, ReportCommand, RiderCommand},
    clients::{Clients, Credentials, Trust, Urls},
    print,
    scenario::{self, Script},
};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    let urls = match &cli.urls.gateway {
        Some(gateway) => Urls {
            call: gateway.clone(),
            rider: gateway.clone(),
            payment: gateway.clone(),
            report: gateway.clone(),
        },
        None => Urls {
            call: cli.urls.call_url,
            rider: cli.urls.rider_url,
            payment: cli.urls.payment_url,
            report: cli.urls.report_url,
        },
    };
    let result = match cli.command {
        Command::Up {
            data_dir,
            port_offset,
            replicas,
            nats_cluster,
            postgres,
        } => {
            let topology = crate::launcher::Topology {
                data_dir,
                port_offset,
                replicas,
                nats_nodes: nats_cluster.map_or(1, |n| n.parse().unwrap_or(3)),
                postgres,
            };
            return crate::launcher::up(topology).await;
        }
        Command::Serve { service } => return crate::launcher::serve(service).await,
        Command::Health { urls } => return health(&urls).await,
        Command::Token {
            role,
            subject,
            ttl,
            data_dir,
        } => crate::token::parse_ttl(&ttl)
            .and_then(|ttl| crate::token::mint(&crate::token::secret(&data_dir)?, role, &subject, ttl))
            .map(|token| println!("{token}")),
        command => match (
            Credentials::bearer(cli.urls.token.as_deref()),
            Trust::ca_file(cli.urls.ca_file.as_deref()),
        ) {
            (Ok(credentials), Ok(trust)) => drive(command, &urls, &credentials, &trust).await,
            (Err(err), _) | (_, Err(err)) => Err(err),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            match err.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {:?}: {}", status.code(), status.message()),
                None => eprintln!("error: {err:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// `baemin health`: SERVING from every URL, or a failure naming those that are not.
async fn health(urls: &[String]) -> ExitCode {
    let mut all = true;
    for url in urls {
        let serving = baemin_mesh_server::probe::is_serving(url).await;
        println!("{url}: {}", if serving { "SERVING" } else { "NOT SERVING" });
        all &= serving;
    }
    if all { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

async fn drive(command: Command, urls: &Urls, credentials: &Credentials, trust: &Trust) -> anyhow::Result<()> {
    let mut c = Clients::connect(urls, credentials, trust)?;
    match command {
        Command::Up { .. } | Command::Serve { .. } | Command::Token { .. } | Command::Health { .. } => {
            unreachable_command()
        }
        Command::Scenario {
            restaurant,
            destination,
            fee,
            rider,
        } => {
            let script = Script {
                restaurant,
                destination,
                fee,
                rider,
                ..Script::default()
            };
            let outcome = scenario::play(&c, &script, &mut |line| println!("{line}")).await?;
            println!(
                "done: call {} COMPLETED, settled {} KRW to {} (commission {} KRW)",
                outcome.call_id, outcome.payment.rider_payout, outcome.payment.rider_id, outcome.payment.commission
            );
            Ok(())
        }
        Command::Call(cmd) => call_command(&mut c, cmd).await,
        Command::Rider(cmd) => rider_command(&mut c, cmd).await,
        Command::Payment(PaymentCommand::Get { call_id }) => {
            let p = c
                .payment
                .get_payment(payment::GetPaymentRequest { call_id })
                .await?
                .into_inner();
            println!("{}", print::payment_line(&p.payment.unwrap_or_default()));
            Ok(())
        }
        Command::Report(cmd) => report_command(&mut c, cmd).await,
        Command::DeadLetters { nats, command } => dead_letter_command(&nats.resolve(), command).await,
        Command::Status { nats } => crate::status::show(&nats.resolve(), &nats.data_dir).await,
    }
}

async fn dead_letter_command(url: &str, cmd: DeadLetterCommand) -> anyhow::Result<()> {
    use baemin_mesh_events::deadletter;
    let jetstream = crate::status::jetstream(url).await?;
    let letters = deadletter::list(&jetstream).await?;
    match cmd {
        DeadLetterCommand::List => {
            for letter in &letters {
                println!("{}", print::dead_letter_line(letter));
            }
            println!("{} dead letter(s)", letters.len());
        }
        DeadLetterCommand::Redrive { sequences, all } => {
            let chosen: Vec<u64> = if all {
                letters.iter().map(|l| l.sequence).collect()
            } else {
                sequences
            };
            if chosen.is_empty() {
                bail!("name dead-letter sequences to re-drive, or --all");
            }
            for sequence in chosen {
                let letter = deadletter::redrive(&jetstream, sequence).await?;
                println!("re-driven {} to {}", letter.sequence, letter.original_subject);
            }
        }
    }
    Ok(())
}

fn unreachable_command() -> anyhow::Result<()> {
    bail!("this command does not drive the mesh")
}

async fn call_command(c: &mut Clients, cmd: CallCommand) -> anyhow::Result<()> {
    match cmd {
        CallCommand::Place {
            restaurant,
            destination,
            fee,
            request_id,
        } => {
            let request_id = request_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            let r = c
                .call
                .place_call(call::PlaceCallRequest {
                    request_id,
                    restaurant_id: restaurant,
                    destination,
                    fee,
                })
                .await?
                .into_inner();
            println!("{}", print::call_line(&r.call.unwrap_or_default()));
        }
        CallCommand::Get { call_id } => {
            let r = c.call.get_call(call::GetCallRequest { call_id }).await?.into_inner();
            println!("{}", print::call_line(&r.call.unwrap_or_default()));
        }
        CallCommand::List(args) => {
            let r = c
                .call
                .list_calls(call::ListCallsRequest {
                    page_size: args.page_size,
                    page_token: args.page_token.clone(),
                    status: status_filter(&args, call::CallStatus::from_str_name, "CALL_STATUS_")? as i32,
                    restaurant_id: args.restaurant.clone().unwrap_or_default(),
                    rider_id: args.rider.clone().unwrap_or_default(),
                })
                .await?
                .into_inner();
            r.calls.iter().for_each(|x| println!("{}", print::call_line(x)));
            next_page(&r.next_page_token);
        }
        CallCommand::Cancel { call_id, reason } => {
            let r = c
                .call
                .cancel_call(call::CancelCallRequest { call_id, reason })
                .await?
                .into_inner();
            println!("{}", print::call_line(&r.call.unwrap_or_default()));
        }
        CallCommand::Watch { call_id } => {
            let mut stream = c
                .call
                .watch_call(call::WatchCallRequest { call_id })
                .await?
                .into_inner();
            while let Some(item) = stream.next().await {
                println!("{}", print::call_line(&item?.call.unwrap_or_default()));
            }
        }
    }
    Ok(())
}

async fn rider_command(c: &mut Clients, cmd: RiderCommand) -> anyhow::Result<()> {
    let show = |d: Option<rider::Delivery>| println!("{}", print::delivery_line(&d.unwrap_or_default()));
    match cmd {
        RiderCommand::Open { page_size } => {
            let r = c
                .rider
                .list_open_calls(rider::ListOpenCallsRequest {
                    page_size,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            r.calls.iter().for_each(|d| println!("{}", print::delivery_line(d)));
            next_page(&r.next_page_token);
        }
        RiderCommand::Watch => {
            let mut stream = c
                .rider
                .watch_open_calls(rider::WatchOpenCallsRequest {})
                .await?
                .into_inner();
            while let Some(item) = stream.next().await {
                let item = item?;
                let change = format!("{:?}", item.change()).to_uppercase();
                println!("{change:<7} {}", print::delivery_line(&item.call.unwrap_or_default()));
            }
        }
        RiderCommand::Accept { call_id, rider } => show(
            c.rider
                .accept_call(rider::AcceptCallRequest {
                    call_id,
                    rider_id: rider,
                })
                .await?
                .into_inner()
                .delivery,
        ),
        RiderCommand::Pickup { call_id, rider } => show(
            c.rider
                .pick_up(rider::PickUpRequest {
                    call_id,
                    rider_id: rider,
                })
                .await?
                .into_inner()
                .delivery,
        ),
        RiderCommand::Complete { call_id, rider } => show(
            c.rider
                .complete_delivery(rider::CompleteDeliveryRequest {
                    call_id,
                    rider_id: rider,
                })
                .await?
                .into_inner()
                .delivery,
        ),
        RiderCommand::Get { call_id } => show(
            c.rider
                .get_delivery(rider::GetDeliveryRequest { call_id })
                .await?
                .into_inner()
                .delivery,
        ),
        RiderCommand::List(args) => {
            let status = status_filter(&args, rider::DeliveryStatus::from_str_name, "DELIVERY_STATUS_")?;
            let r = c
                .rider
                .list_deliveries(rider::ListDeliveriesRequest {
                    page_size: args.page_size,
                    page_token: args.page_token.clone(),
                    status: status as i32,
                    rider_id: args.rider.clone().unwrap_or_default(),
                    restaurant_id: args.restaurant.clone().unwrap_or_default(),
                })
                .await?
                .into_inner();
            r.deliveries
                .iter()
                .for_each(|d| println!("{}", print::delivery_line(d)));
            next_page(&r.next_page_token);
        }
    }
    Ok(())
}

async fn report_command(c: &mut Clients, cmd: ReportCommand) -> anyhow::Result<()> {
    match cmd {
        ReportCommand::Get { call_id } => {
            let r = c
                .report
                .get_delivery_view(report::GetDeliveryViewRequest { call_id })
                .await?
                .into_inner();
            println!("{}", print::view_line(&r.view.unwrap_or_default()));
        }
        ReportCommand::List(args) => {
            let status = status_filter(&args, report::DeliveryStatus::from_str_name, "DELIVERY_STATUS_")?;
            let r = c
                .report
                .list_delivery_views(report::ListDeliveryViewsRequest {
                    page_size: args.page_size,
                    page_token: args.page_token.clone(),
                    status: status as i32,
                    restaurant_id: args.restaurant.clone().unwrap_or_default(),
                    rider_id: args.rider.clone().unwrap_or_default(),
                })
                .await?
                .into_inner();
            r.views.iter().for_each(|v| println!("{}", print::view_line(v)));
            next_page(&r.next_page_token);
        }
        ReportCommand::Stats => {
            let s = c.report.get_stats(report::GetStatsRequest {}).await?.into_inner();
            print::stats_lines(&s).iter().for_each(|l| println!("{l}"));
        }
        ReportCommand::Rebuild { nats, into, compare } => {
            let live = compare.then(|| c.report.clone());
            crate::rebuild::run(&nats.resolve(), &into, live).await?;
        }
        ReportCommand::Watch { call_id } => {
            let mut stream = c
                .report
                .watch_delivery_views(report::WatchDeliveryViewsRequest {
                    call_id: call_id.unwrap_or_default(),
                    include_snapshot: true,
                })
                .await?
                .into_inner();
            while let Some(item) = stream.next().await {
                println!("{}", print::view_line(&item?.view.unwrap_or_default()));
            }
        }
    }
    Ok(())
}

/// The status filter of `args` as the protobuf enum value named `<prefix><STATUS>`; unset means any (0).
fn status_filter<E: Default>(args: &ListArgs, from_name: fn(&str) -> Option<E>, prefix: &str) -> anyhow::Result<E> {
    let Some(status) = &args.status else {
        return Ok(E::default());
    };
    let mut name = status.to_uppercase();
    if name == "OPEN" && prefix == "CALL_STATUS_" {
        name = "CALLED".into();
    }
    if name == "CALLED" && prefix == "DELIVERY_STATUS_" && from_name("DELIVERY_STATUS_OPEN").is_some() {
        name = "OPEN".into();
    }
    from_name(&format!("{prefix}{name}")).with_context(|| format!("unknown status {status:?}"))
}

fn next_page(token: &str) {
    if !token.is_empty() {
        println!("next page: --page-token {token}");
    }
}
