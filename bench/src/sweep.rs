//! `sweep`: produce over record sizes, partition counts and codecs with both clients;
//! writes `sweep.csv` and one SVG chart per series into `--out`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use crate::broker::Broker;
use crate::latency::Samples;
use crate::options::Options;
use crate::report::Report;
use crate::workload::{delete_topic, ensure_topic, run_one};

const SIZES: &[usize] = &[10, 100, 1_000, 10_000, 100_000, 1_000_000];
const PARTITIONS: &[i32] = &[1, 10, 100, 1_000, 10_000];
const CODECS: &[&str] = &["none", "gzip", "snappy", "lz4", "zstd"];
const CLIENTS: &[&str] = &["fjord", "rdkafka"];
/// Bytes each record-size point writes.
const BYTES_PER_POINT: u64 = 300 << 20;

/// One measured point.
struct Point {
    series: &'static str,
    x: f64,
    label: String,
    report: Report,
}

fn measure(bootstrap: &str, base: &Options, o: Options, broker: &Broker) -> Result<Report> {
    ensure_topic(bootstrap, &o.topic, o.partitions)?;
    let mut o = o;
    o.json = true; // no progress lines inside a sweep
    o.properties.clone_from(&base.properties);
    let report = run_one(bootstrap, &o, &Samples::default(), broker)?;
    delete_topic(bootstrap, &o.topic)?;
    if !base.json {
        println!(
            "{:>8} {:<8} size {:>8} partitions {:>6} {:<7} {:>10.0} records/s {:>9.1} MB/s",
            o.command,
            o.client,
            o.record_size,
            o.partitions,
            o.compression,
            report.records_per_sec,
            report.bytes_per_sec / 1e6
        );
    }
    Ok(report)
}

pub(crate) fn run(base: &Options) -> Result<()> {
    let spawned = Broker::for_options(base)?;
    let bootstrap = spawned.bootstrap.clone();
    let broker = &spawned;
    let mut points = Vec::new();
    for client in CLIENTS {
        for &size in SIZES {
            let mut o = base.clone();
            o.command = "produce".into();
            o.client = (*client).into();
            o.record_size = size;
            o.records = (BYTES_PER_POINT / size as u64).clamp(200, 3_000_000);
            o.topic = format!("sweep-size-{client}-{size}");
            let report = measure(&bootstrap, base, o, broker)?;
            points.push(Point {
                series: "size",
                x: size as f64,
                label: size.to_string(),
                report,
            });
        }
        for &partitions in PARTITIONS {
            let mut o = base.clone();
            o.command = "produce".into();
            o.client = (*client).into();
            o.record_size = 100;
            o.records = 1_000_000;
            o.partitions = partitions;
            // Every partition gets records: the curve shows what partitions cost, which
            // a sticky partitioner filling 1 MB batches would hide.
            o.partitioner = crate::options::Partitioner::RoundRobin;
            o.topic = format!("sweep-partitions-{client}-{partitions}");
            let report = measure(&bootstrap, base, o, broker)?;
            points.push(Point {
                series: "partitions",
                x: f64::from(partitions),
                label: partitions.to_string(),
                report,
            });
        }
        for (i, codec) in CODECS.iter().enumerate() {
            let mut o = base.clone();
            o.command = "produce".into();
            o.client = (*client).into();
            o.record_size = 100;
            o.records = 1_000_000;
            o.compression = (*codec).into();
            o.topic = format!("sweep-codec-{client}-{codec}");
            let report = measure(&bootstrap, base, o, broker)?;
            points.push(Point {
                series: "codec",
                x: i as f64,
                label: (*codec).into(),
                report,
            });
        }
    }
    let out = Path::new(&base.out);
    std::fs::create_dir_all(out)?;
    let mut csv = String::from(
        "series,client,record_size,partitions,compression,records,records_per_sec,mb_per_sec,p50_ms,p99_ms\n",
    );
    for p in &points {
        let r = &p.report;
        let (p50, p99) = r.latency.map_or((f64::NAN, f64::NAN), |l| (l.p50, l.p99));
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{:.0},{:.2},{:.3},{:.3}",
            p.series,
            r.client,
            r.record_size,
            r.partitions,
            r.compression,
            r.records,
            r.records_per_sec,
            r.bytes_per_sec / 1e6,
            p50,
            p99
        );
    }
    std::fs::write(out.join("sweep.csv"), csv)?;
    chart(
        &points,
        "size",
        "MB/s by record size (bytes, log scale)",
        &out.join("sweep-record-size.svg"),
        true,
        |r| r.bytes_per_sec / 1e6,
    )?;
    chart(
        &points,
        "partitions",
        "records/s by partition count, records spread round robin (log scale)",
        &out.join("sweep-partitions.svg"),
        true,
        |r| r.records_per_sec,
    )?;
    chart(
        &points,
        "codec",
        "records/s by codec (none, gzip, snappy, lz4, zstd)",
        &out.join("sweep-codecs.svg"),
        false,
        |r| r.records_per_sec,
    )?;
    println!("wrote {}", out.join("sweep.csv").display());
    Ok(())
}

fn plot_error(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow::anyhow!("chart: {e:?}")
}

/// One line per client over the points of `series`.
fn chart(
    points: &[Point],
    series: &str,
    title: &str,
    path: &Path,
    log_x: bool,
    y: impl Fn(&Report) -> f64,
) -> Result<()> {
    let mine: Vec<&Point> = points.iter().filter(|p| p.series == series).collect();
    let max_y = mine.iter().map(|p| y(&p.report)).fold(0.0f64, f64::max) * 1.1 + 1.0;
    let max_x = mine.iter().map(|p| p.x).fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80);
    if log_x {
        let mut chart = builder
            .build_cartesian_2d((1.0..max_x * 1.5).log_scale(), 0.0..max_y)
            .map_err(plot_error)?;
        chart.configure_mesh().draw().map_err(plot_error)?;
        draw_lines(&mut chart, &mine, &y)?;
    } else {
        let mut chart = builder
            .build_cartesian_2d(-0.5..max_x + 0.5, 0.0..max_y)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| {
                let i = x.round();
                mine.iter()
                    .find(|p| (p.x - i).abs() < 0.01)
                    .map_or_else(String::new, |p| p.label.clone())
            })
            .draw()
            .map_err(plot_error)?;
        draw_lines(&mut chart, &mine, &y)?;
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

fn draw_lines<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    mine: &[&Point],
    y: &dyn Fn(&Report) -> f64,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let colors = [RGBColor(31, 119, 180), RGBColor(214, 39, 40)];
    for (client, color) in CLIENTS.iter().zip(colors) {
        let line: Vec<(f64, f64)> = mine
            .iter()
            .filter(|p| p.report.client == *client)
            .map(|p| (p.x, y(&p.report)))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(plot_error)?
            .label(*client)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(
                line.iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
            )
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}
