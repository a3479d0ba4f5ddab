//! `ember`: neighbour embeddings from the command line. A thin frontend: it reads files,
//! calls `ember-core`, and writes files. All numerics live in the core.

mod plot;
mod progress;

use clap::{Parser, Subcommand, ValueEnum};
use ember_cli::io;
use ember_core::MatRef;
use ember_core::knn::Metric;
use ember_core::ne::{NeGraph, NeLoss, NeParams, SgdSummary};
use ember_core::nndescent::Projection;
use ember_core::threads::Threads;
use ember_core::tsne::{Init, KnnMethod, Repulsion, TsneParams};
use ember_core::umap::{InitUsed, UmapInit, UmapParams};
use std::path::PathBuf;
use std::process::ExitCode;

/// The bundled demo set: the MNIST test set (10 000 digits, LeCun, Cortes & Burges).
const DEMO_IMAGES: &[u8] = include_bytes!("../../data/t10k-images.idx3-ubyte.gz");
const DEMO_LABELS: &[u8] = include_bytes!("../../data/t10k-labels.idx1-ubyte.gz");

#[derive(Parser)]
#[command(
    name = "ember",
    version,
    about = "Neighbour embeddings: t-SNE, UMAP and the contrastive family between them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embed data with t-SNE. Without INPUT, embeds the bundled MNIST test set.
    Tsne(TsneArgs),
    /// Embed data with UMAP. Without INPUT, embeds the bundled MNIST test set.
    Umap(UmapArgs),
    /// Contrastive neighbour embedding (NEG / Neg-t-SNE, NCE, InfoNC-t-SNE, UMAP loss),
    /// one embedding or a spectrum of them from t-SNE-like (s = 0) to UMAP-like (s = 1).
    Ne(NeArgs),
    /// I-Con as an embedding method: minimise Σ_i KL(p(·|i) ‖ q(·|i)) with p from the data and
    /// q from the embedding, every pair exact (for up to some ten thousand points).
    Icon(IconArgs),
    /// Score an embedding: recall@k of input-space neighbours and k-NN accuracy.
    Eval(EvalArgs),
    /// Place new points into a saved t-SNE or UMAP model's embedding without moving it.
    Transform(TransformArgs),
}

#[derive(clap::Args)]
struct TransformArgs {
    /// A model saved with `ember tsne|umap --save-model`.
    model: PathBuf,
    /// New points with the fitted data's columns (same formats as the fit's input).
    input: PathBuf,
    /// Labels of the new points, to colour the plot.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Labels of the model's reference points: with --labels, report the 10-NN accuracy of
    /// the new points classified by their nearest reference points in the embedding.
    #[arg(long)]
    reference_labels: Option<PathBuf>,
    /// Output file, .npy or .csv.
    #[arg(short, long, default_value = "transformed.csv")]
    output: PathBuf,
    /// Write a scatter plot (PNG) of the new points.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// t-SNE: perplexity of each new point's neighbourhood [default: 5].
    #[arg(long)]
    perplexity: Option<f32>,
    /// Reference neighbours per new point [default: t-SNE 25, UMAP the fit's].
    #[arg(long)]
    neighbors: Option<usize>,
    /// t-SNE iterations [default: 250] or UMAP epochs [default: 100].
    #[arg(long)]
    iters: Option<usize>,
    /// [default: t-SNE 0.1, UMAP a quarter of the fit's]
    #[arg(long)]
    learning_rate: Option<f32>,
    /// t-SNE: exaggeration of the attraction [default: 1.5].
    #[arg(long)]
    exaggeration: Option<f32>,
    /// Worker threads (0 = all cores). The result does not depend on it.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum MetricArg {
    Euclidean,
    Cosine,
}

impl From<MetricArg> for Metric {
    fn from(m: MetricArg) -> Self {
        match m {
            MetricArg::Euclidean => Metric::SqEuclidean,
            MetricArg::Cosine => Metric::Cosine,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum RepulsionArg {
    Exact,
    Bh,
    Fft,
    Auto,
}

#[derive(Clone, Copy, ValueEnum)]
enum KnnArg {
    Exact,
    Approx,
    Auto,
}

#[derive(Clone, Copy, ValueEnum)]
enum InitArg {
    Pca,
    Random,
}

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
struct TsneArgs {
    #[command(flatten)]
    io: IoArgs,
    #[arg(long, default_value_t = 30.0)]
    perplexity: f32,
    /// Output dimensions.
    #[arg(long, default_value_t = 2)]
    dims: usize,
    /// Iterations after early exaggeration.
    #[arg(long, default_value_t = 500)]
    iters: usize,
    /// Early-exaggeration iterations.
    #[arg(long, default_value_t = 250)]
    early_iters: usize,
    #[arg(long, default_value_t = 12.0)]
    exaggeration: f32,
    /// A number, or "auto" for max(N / exaggeration, 50).
    #[arg(long, default_value = "auto")]
    learning_rate: String,
    #[arg(long, default_value_t = 0.8)]
    momentum: f32,
    /// Degrees of freedom of the output kernel (1 = Cauchy; smaller = heavier tails).
    #[arg(long, default_value_t = 1.0)]
    dof: f32,
    /// Barnes–Hut opening angle.
    #[arg(long, default_value_t = 0.5)]
    theta: f32,
    #[arg(long, value_enum, default_value = "auto")]
    repulsion: RepulsionArg,
    #[arg(long, value_enum, default_value = "euclidean")]
    metric: MetricArg,
    /// Neighbour search: exact, approx (random-projection trees + NN-descent), or auto
    /// (exact up to 5000 points).
    #[arg(long, value_enum, default_value = "auto")]
    knn: KnnArg,
    /// Approximate search in an N-dimensional dominant subspace of data with at least 2N
    /// columns, candidates then ranked by their full distances: a number, "off", or "auto"
    /// (64).
    #[arg(long, default_value = "auto", value_parser = parse_projection)]
    knn_projection: Projection,
    /// Reduce the data to its N-dimensional dominant (principal) subspace first; 0 = off.
    /// Faster neighbour search on wide data at some cost in neighbourhood fidelity.
    #[arg(long, default_value_t = 0)]
    pca: usize,
    #[arg(long, value_enum, default_value = "pca")]
    init: InitArg,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Also save the fitted model (the data, its embedding and the settings) for
    /// `ember transform`.
    #[arg(long)]
    save_model: Option<PathBuf>,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

/// Where the data comes from and where results go; without INPUT, the bundled MNIST test set.
#[derive(clap::Args)]
struct IoArgs {
    /// Data: .npy (f32/f64/u8/integers, C or Fortran order), .csv/.tsv, or IDX (optionally .gz).
    input: Option<PathBuf>,
    /// Labels, one per row (IDX, .npy, or text with one label per line); used to colour the plot.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Output file, .npy or .csv.
    #[arg(short, long, default_value = "embedding.csv")]
    output: PathBuf,
    /// Write a scatter plot (PNG). Default for the demo run: embedding.png.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// Options the SGD embedding commands share.
#[derive(clap::Args)]
struct Common {
    #[command(flatten)]
    io: IoArgs,
    /// Output dimensions.
    #[arg(long, default_value_t = 2)]
    dims: usize,
    #[arg(long, value_enum, default_value = "euclidean")]
    metric: MetricArg,
    /// Neighbour search: exact, approx (random-projection trees + NN-descent), or auto
    /// (exact up to 5000 points).
    #[arg(long, value_enum, default_value = "auto")]
    knn: KnnArg,
    /// Approximate search in an N-dimensional dominant subspace of data with at least 2N
    /// columns, candidates then ranked by their full distances: a number, "off", or "auto"
    /// (64).
    #[arg(long, default_value = "auto", value_parser = parse_projection)]
    knn_projection: Projection,
    /// SGD epochs (0 = 500 up to 10 000 points, 200 above).
    #[arg(long, default_value_t = 0)]
    epochs: usize,
    /// Uniform negative samples per positive pair.
    #[arg(
        long = "negative-samples",
        visible_alias = "negatives",
        default_value_t = 5
    )]
    negatives: usize,
    /// Initial SGD learning rate (annealed linearly to 0).
    #[arg(long, default_value_t = 1.0)]
    learning_rate: f32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum SgdInitArg {
    Spectral,
    Pca,
    Random,
}

impl From<SgdInitArg> for UmapInit {
    fn from(a: SgdInitArg) -> Self {
        match a {
            SgdInitArg::Spectral => UmapInit::Spectral,
            SgdInitArg::Pca => UmapInit::Pca,
            SgdInitArg::Random => UmapInit::Random,
        }
    }
}

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
struct UmapArgs {
    #[command(flatten)]
    common: Common,
    /// Neighbourhood size, counting the point itself (as umap-learn's n_neighbors).
    #[arg(long, default_value_t = 15)]
    neighbors: usize,
    #[arg(long, default_value_t = 0.1)]
    min_dist: f32,
    #[arg(long, default_value_t = 1.0)]
    spread: f32,
    /// Initialisation; spectral falls back to PCA (and says so) on a disconnected graph.
    #[arg(long, value_enum, default_value = "spectral")]
    init: SgdInitArg,
    /// Also save the fitted model (the data, its embedding and the settings) for
    /// `ember transform`.
    #[arg(long)]
    save_model: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LossArg {
    Neg,
    Nce,
    Infonce,
    Umap,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphArg {
    Fuzzy,
    Binary,
}

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
struct NeArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, value_enum, default_value = "neg")]
    loss: LossArg,
    /// Spectrum position: 0 t-SNE-like, 1 UMAP-like; values outside extrapolate.
    #[arg(long, default_value_t = 0.0, conflicts_with_all = ["zbar", "spectrum"])]
    s: f64,
    /// NEG's fixed normaliser Z̄ (instead of --s).
    #[arg(long, conflicts_with = "spectrum")]
    zbar: Option<f64>,
    /// Several spectrum positions, comma-separated: one embedding each from one kNN graph.
    /// Outputs go to OUTPUT with "_s<value>" before the extension; the plot has one panel each.
    #[arg(long, value_delimiter = ',')]
    spectrum: Option<Vec<f64>>,
    /// Neighbours per point (not counting the point itself).
    #[arg(long, default_value_t = 15)]
    neighbors: usize,
    /// Positive pairs from UMAP's fuzzy graph (drawn by weight) or the binary kNN graph.
    #[arg(long, value_enum, default_value = "fuzzy")]
    graph: GraphArg,
    /// Epochs first run at the UMAP end of the spectrum (like early exaggeration): a number,
    /// or "auto" (none up to 10 000 points, half of --epochs above).
    #[arg(long, default_value = "auto")]
    early_epochs: String,
    #[arg(long, value_enum, default_value = "pca")]
    init: SgdInitArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum PArg {
    Knn,
    Perplexity,
}

#[derive(Clone, Copy, ValueEnum)]
enum QArg {
    StudentT,
    Gaussian,
    Cosine,
}

#[derive(clap::Args)]
#[command(allow_negative_numbers = true)]
struct IconArgs {
    #[command(flatten)]
    io: IoArgs,
    #[arg(long, default_value_t = 2)]
    dims: usize,
    /// p: uniform over the k nearest neighbours, or Gaussian calibrated to a perplexity.
    #[arg(long, value_enum, default_value = "knn")]
    p: PArg,
    #[arg(long, default_value_t = 15)]
    k: usize,
    #[arg(long, default_value_t = 30.0)]
    perplexity: f32,
    /// q: Student-t (--dof), Gaussian (--gamma) or cosine softmax (--tau).
    #[arg(long, value_enum, default_value = "student-t")]
    q: QArg,
    #[arg(long, default_value_t = 1.0)]
    dof: f32,
    #[arg(long, default_value_t = 1.0)]
    gamma: f32,
    #[arg(long, default_value_t = 0.5)]
    tau: f32,
    /// Normalise p and q over all pairs (t-SNE) instead of per row.
    #[arg(long)]
    joint: bool,
    /// Debiasing α: p̃ = (1 − α)p + α·uniform.
    #[arg(long, default_value_t = 0.0)]
    alpha: f32,
    #[arg(long, default_value_t = 300)]
    iters: usize,
    #[arg(long, default_value_t = 100)]
    early_iters: usize,
    #[arg(long, default_value_t = 4.0)]
    exaggeration: f32,
    /// A number, or "auto" for max(N / exaggeration, 50).
    #[arg(long, default_value = "auto")]
    learning_rate: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(short, long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// The input data the embedding was made from.
    data: PathBuf,
    /// The embedding (.npy or .csv), one row per data row.
    embedding: PathBuf,
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Neighbours for recall and the classifier.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    #[arg(long, value_enum, default_value = "euclidean")]
    metric: MetricArg,
    /// Seed of the 90/10 train/test split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    io::use_threads(match &cli.command {
        Command::Tsne(a) => a.threads,
        Command::Umap(a) => a.common.threads,
        Command::Ne(a) => a.common.threads,
        Command::Icon(a) => a.threads,
        Command::Eval(a) => a.threads,
        Command::Transform(a) => a.threads,
    });
    let result = match cli.command {
        Command::Tsne(a) => run_tsne(a),
        Command::Umap(a) => run_umap(a),
        Command::Ne(a) => run_ne(a),
        Command::Icon(a) => run_icon(a),
        Command::Eval(a) => run_eval(a),
        Command::Transform(a) => run_transform(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ember: error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, String>;

/// The data, its labels, where to plot, and a name for messages. No INPUT = the demo set,
/// which also gets labels and a plot by default.
struct Loaded {
    data: io::Matrix,
    labels: Option<io::Labels>,
    plot: Option<PathBuf>,
    src: String,
}

impl Loaded {
    /// The data as a row-major matrix, checked for NaN and infinity.
    fn matrix(&self) -> Res<MatRef<'_>> {
        let x = MatRef::dense(&self.data.values, self.data.rows, self.data.cols)
            .map_err(|e| format!("{}: {e}", self.src))?;
        x.check_values().map_err(|e| format!("{}: {e}", self.src))?;
        Ok(x)
    }

    /// Writes the scatter plot, if one was asked for (or it is the demo run).
    fn plot(&self, y: &[f32], dims: usize) -> Res<()> {
        match &self.plot {
            Some(p) => plot::write_scatter(
                p,
                y,
                self.data.rows,
                dims,
                self.labels.as_ref().map(|l| l.ids.as_slice()),
            ),
            None => Ok(()),
        }
    }
}

fn load(io: &IoArgs) -> Res<Loaded> {
    let (input, labels, plot) = (&io.input, &io.labels, &io.plot);
    let (data, labels, plot) = match input {
        Some(p) => {
            let data = io::read_matrix(p)?;
            let labels = labels.as_deref().map(io::read_labels).transpose()?;
            (data, labels, plot.clone())
        }
        None => {
            let data = io::parse_matrix(DEMO_IMAGES, "bundled MNIST test images")?;
            let labels = match labels {
                Some(p) => io::read_labels(p)?,
                None => io::parse_labels(DEMO_LABELS, "bundled MNIST test labels")?,
            };
            (
                data,
                Some(labels),
                Some(
                    plot.clone()
                        .unwrap_or_else(|| PathBuf::from("embedding.png")),
                ),
            )
        }
    };
    let src = input
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "demo".into());
    if let Some(l) = &labels {
        l.check_count(data.rows)?;
    }
    if let Some(p) = &plot {
        io::check_png_path(p)?;
    }
    Ok(Loaded {
        data,
        labels,
        plot,
        src,
    })
}

fn run_tsne(a: TsneArgs) -> Res<()> {
    let Loaded {
        data,
        labels,
        plot,
        src,
    } = load(&a.io)?;
    let out_kind = io::OutputKind::from_path(&a.io.output)?;
    io::check_writable(&a.io.output, "the output")?;
    if let Some(m) = &a.save_model {
        io::check_writable(m, "the model")?;
    }
    let learning_rate = match a.learning_rate.as_str() {
        "auto" => 0.0,
        s => match s.parse::<f32>() {
            Ok(v) if v.is_finite() && v > 0.0 => v,
            _ => {
                return Err(format!(
                    "--learning-rate: expected a positive number or 'auto', got '{s}'"
                ));
            }
        },
    };
    let params = TsneParams {
        dims: a.dims,
        perplexity: a.perplexity,
        metric: a.metric.into(),
        knn: match a.knn {
            KnnArg::Exact => KnnMethod::Exact,
            KnnArg::Approx => KnnMethod::Approx,
            KnnArg::Auto => KnnMethod::Auto,
        },
        pca: a.pca,
        nn_descent: nn_descent(a.knn_projection),
        early_iters: a.early_iters,
        iters: a.iters,
        exaggeration: a.exaggeration,
        learning_rate,
        momentum: a.momentum,
        dof: a.dof,
        theta: a.theta,
        repulsion: match a.repulsion {
            RepulsionArg::Exact => Repulsion::Exact,
            RepulsionArg::Bh => Repulsion::BarnesHut,
            RepulsionArg::Fft => Repulsion::Fft,
            RepulsionArg::Auto => Repulsion::Auto,
        },
        init: match a.init {
            InitArg::Pca => Init::Pca,
            InitArg::Random => Init::Random,
        },
        seed: a.seed,
        ..TsneParams::default()
    };
    params.validate().map_err(|e| e.to_string())?;
    let x = MatRef::dense(&data.values, data.rows, data.cols).map_err(|e| format!("{src}: {e}"))?;
    if data.rows < 2 {
        return Err(format!(
            "{src}: {}",
            ember_core::Error::TooFewPoints {
                n: data.rows,
                min: 2
            }
        ));
    }
    ember_core::affinity::check_perplexity(data.rows, a.perplexity)
        .map_err(|e| format!("{src}: {e}"))?;
    x.check_values().map_err(|e| format!("{src}: {e}"))?;

    let par = Threads::new(a.threads);
    let mut scratch = scratch_for(
        ember_core::tsne::tsne_scratch(data.rows, data.cols, &params).bytes(),
        &src,
    )?;
    let mut y = vec![0.0f32; data.rows * params.dims];
    let mut obs = progress::Reporter::new(a.quiet, "KL");
    let t0 = std::time::Instant::now();
    let summary = ember_core::tsne::tsne(x, &params, &par, &mut obs, &mut scratch, &mut y)
        .map_err(|e| format!("{src}: {e}"))?;
    obs.finish();
    io::write_embedding(&a.io.output, out_kind, &y, data.rows, params.dims)?;
    if let Some(m) = &a.save_model {
        let basis = params
            .reduced_dims(data.cols)
            .map(|r| ember_core::fitted::pca_basis(x, r, params.seed, &par))
            .transpose()
            .map_err(|e| format!("{src}: {e}"))?;
        let method = ember_core::model::Method::Tsne {
            dof: params.dof,
            perplexity: params.perplexity,
        };
        let model = ember_core::fitted::FittedModel::from_fit(
            method,
            params.metric,
            x,
            basis,
            y.clone(),
            params.dims,
            params.seed,
            &par,
        )
        .map_err(|e| format!("{}: {e}", m.display()))?;
        io::write_model(m, &model)?;
    }
    if let Some(p) = &plot {
        plot::write_scatter(
            p,
            &y,
            data.rows,
            params.dims,
            labels.as_ref().map(|l| l.ids.as_slice()),
        )?;
    }
    let timings = obs.timing_summary();
    if !a.quiet {
        eprintln!("stages: {timings}");
        eprintln!(
            "embedded {} × {} in {:.1} s on {} threads; KL {:.4}; wrote {}{}",
            data.rows,
            data.cols,
            t0.elapsed().as_secs_f64(),
            par.count(),
            summary.kl,
            a.io.output.display(),
            plot.map(|p| format!(" and {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn parse_projection(s: &str) -> Result<Projection, String> {
    match s {
        "auto" => Ok(Projection::Auto),
        "off" | "0" => Ok(Projection::Off),
        v => v
            .parse::<usize>()
            .map(Projection::Dims)
            .map_err(|_| format!("expected a number of dimensions, 'off' or 'auto', got '{v}'")),
    }
}

fn nn_descent(projection: Projection) -> ember_core::nndescent::NnDescentParams {
    ember_core::nndescent::NnDescentParams {
        projection,
        ..Default::default()
    }
}

fn knn_method(k: KnnArg) -> KnnMethod {
    match k {
        KnnArg::Exact => KnnMethod::Exact,
        KnnArg::Approx => KnnMethod::Approx,
        KnnArg::Auto => KnnMethod::Auto,
    }
}

fn init_note(init: InitUsed) -> Option<String> {
    match init {
        InitUsed::PcaDisconnected { components } => Some(format!(
            "note: the neighbour graph has {components} connected components, so spectral \
             initialisation was replaced by PCA"
        )),
        InitUsed::PcaNotConverged => Some(
            "note: the spectral eigensolver did not converge, so initialisation used PCA".into(),
        ),
        _ => None,
    }
}

fn run_umap(a: UmapArgs) -> Res<()> {
    let c = &a.common;
    let loaded = load(&c.io)?;
    let (data, src) = (&loaded.data, &loaded.src);
    let out_kind = io::OutputKind::from_path(&c.io.output)?;
    io::check_writable(&c.io.output, "the output")?;
    if let Some(m) = &a.save_model {
        io::check_writable(m, "the model")?;
    }
    let params = UmapParams {
        dims: c.dims,
        neighbors: a.neighbors,
        min_dist: a.min_dist,
        spread: a.spread,
        epochs: c.epochs,
        negatives: c.negatives,
        learning_rate: c.learning_rate,
        metric: c.metric.into(),
        knn: knn_method(c.knn),
        nn_descent: nn_descent(c.knn_projection),
        init: a.init.into(),
        seed: c.seed,
    };
    let n = data.rows;
    params.validate().map_err(|e| e.to_string())?;
    params.check_n(n).map_err(|e| format!("{src}: {e}"))?;
    let x = loaded.matrix()?;
    let par = Threads::new(c.threads);
    let mut scratch = scratch_for(
        ember_core::umap::umap_scratch(n, data.cols, &params).bytes(),
        src,
    )?;
    let mut y = vec![0.0f32; n * params.dims];
    let mut obs = progress::Reporter::new(c.quiet, "loss");
    let t0 = std::time::Instant::now();
    let summary = ember_core::umap::umap(x, &params, &par, &mut obs, &mut scratch, &mut y)
        .map_err(|e| format!("{src}: {e}"))?;
    obs.finish();
    io::write_embedding(&c.io.output, out_kind, &y, n, params.dims)?;
    if let Some(m) = &a.save_model {
        let method = ember_core::model::Method::Umap {
            a: summary.a,
            b: summary.b,
            neighbors: params.neighbors,
            negatives: params.negatives,
            learning_rate: params.learning_rate,
            min_dist: params.min_dist,
            spread: params.spread,
        };
        let model = ember_core::fitted::FittedModel::from_fit(
            method,
            params.metric,
            x,
            None,
            y.clone(),
            params.dims,
            params.seed,
            &par,
        )
        .map_err(|e| format!("{}: {e}", m.display()))?;
        io::write_model(m, &model)?;
    }
    loaded.plot(&y, params.dims)?;
    if let Some(note) = init_note(summary.init) {
        eprintln!("{note}");
    }
    if !c.quiet {
        eprintln!("stages: {}", obs.timing_summary());
        eprintln!(
            "embedded {n} × {} in {:.1} s on {} threads; a = {:.3}, b = {:.3}, {} edges; wrote {}{}",
            data.cols,
            t0.elapsed().as_secs_f64(),
            par.count(),
            summary.a,
            summary.b,
            summary.edges,
            c.io.output.display(),
            loaded
                .plot
                .as_ref()
                .map(|p| format!(" and {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// OUTPUT with "_s<value>" before the extension.
fn panel_path(out: &std::path::Path, s: f64) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let ext = out
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    out.with_file_name(format!("{stem}_s{s}{ext}"))
}

fn run_ne(a: NeArgs) -> Res<()> {
    let c = &a.common;
    let Loaded {
        data,
        labels,
        plot,
        src,
    } = load(&c.io)?;
    let out_kind = io::OutputKind::from_path(&c.io.output)?;
    io::check_writable(&c.io.output, "the output")?;
    let s_values = a.spectrum.clone().unwrap_or_else(|| vec![a.s]);
    if s_values.iter().any(|v| !v.is_finite()) {
        return Err("--spectrum: values must be finite numbers".into());
    }
    if let Some(z) = a.zbar {
        if !(z.is_finite() && z > 0.0) {
            return Err(format!("--zbar: must be a finite number > 0, got {z}"));
        }
    }
    let params = NeParams {
        dims: c.dims,
        neighbors: a.neighbors,
        graph: match a.graph {
            GraphArg::Fuzzy => NeGraph::Fuzzy,
            GraphArg::Binary => NeGraph::Binary,
        },
        loss: match a.loss {
            LossArg::Neg => NeLoss::Neg,
            LossArg::Nce => NeLoss::Nce,
            LossArg::Infonce => NeLoss::InfoNce,
            LossArg::Umap => NeLoss::Umap,
        },
        s: a.s,
        zbar: a.zbar.unwrap_or(0.0),
        negatives: c.negatives,
        epochs: c.epochs,
        early_epochs: match a.early_epochs.as_str() {
            "auto" => None,
            v => Some(v.parse::<usize>().map_err(|_| {
                format!("--early-epochs: expected a whole number or 'auto', got '{v}'")
            })?),
        },
        learning_rate: c.learning_rate,
        metric: c.metric.into(),
        knn: knn_method(c.knn),
        nn_descent: nn_descent(c.knn_projection),
        init: a.init.into(),
        seed: c.seed,
        ..NeParams::default()
    };
    let n = data.rows;
    params.validate().map_err(|e| e.to_string())?;
    params.check_n(n).map_err(|e| format!("{src}: {e}"))?;
    let x = MatRef::dense(&data.values, n, data.cols).map_err(|e| format!("{src}: {e}"))?;
    x.check_values().map_err(|e| format!("{src}: {e}"))?;
    let par = Threads::new(c.threads);
    let mut scratch = scratch_for(
        ember_core::ne::ne_scratch(n, data.cols, &params).bytes(),
        &src,
    )?;
    let per = n * params.dims;
    let mut ys = vec![0.0f32; per * s_values.len()];
    let mut summaries = vec![SgdSummary::default(); s_values.len()];
    let mut obs = progress::Reporter::new(c.quiet, "loss");
    let t0 = std::time::Instant::now();
    let init = ember_core::ne::ne_spectrum(
        x,
        &params,
        &s_values,
        &par,
        &mut obs,
        &mut scratch,
        &mut ys,
        &mut summaries,
    )
    .map_err(|e| format!("{src}: {e}"))?;
    obs.finish();
    let spectrum = a.spectrum.is_some();
    let outputs: Vec<PathBuf> = if spectrum {
        s_values
            .iter()
            .map(|&v| panel_path(&c.io.output, v))
            .collect()
    } else {
        vec![c.io.output.clone()]
    };
    for (p, path) in outputs.iter().enumerate() {
        io::write_embedding(path, out_kind, &ys[p * per..(p + 1) * per], n, params.dims)?;
    }
    let ids = labels.as_ref().map(|l| l.ids.as_slice());
    if let Some(p) = &plot {
        if spectrum {
            let panels: Vec<(String, &[f32])> = s_values
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("s={v}"), &ys[i * per..(i + 1) * per]))
                .collect();
            plot::write_panels(p, &panels, n, params.dims, ids)?;
        } else {
            plot::write_scatter(p, &ys, n, params.dims, ids)?;
        }
    }
    if let Some(note) = init_note(init) {
        eprintln!("{note}");
    }
    if !c.quiet {
        eprintln!("stages: {}", obs.timing_summary());
        for (v, sm) in s_values.iter().zip(&summaries) {
            eprintln!(
                "  s = {v}: loss {:.4}{}",
                sm.loss,
                if sm.zbar > 0.0 {
                    format!(", Z̄ = {:.4e}", sm.zbar)
                } else {
                    String::new()
                }
            );
        }
        eprintln!(
            "embedded {n} × {} ({} panel{}) in {:.1} s on {} threads; wrote {}{}",
            data.cols,
            s_values.len(),
            if s_values.len() == 1 { "" } else { "s" },
            t0.elapsed().as_secs_f64(),
            par.count(),
            outputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            plot.map(|p| format!(" and {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Memory the system can still give (MemAvailable), if it says.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The core's working memory, from its size query: refused up front, with the figure, when
/// the machine does not have it, rather than failing (or swapping) part way.
fn scratch_for(bytes: usize, src: &str) -> Res<Vec<u8>> {
    let gb = |b: u64| b as f64 / 1e9;
    if let Some(avail) = available_memory() {
        if bytes as u64 > avail {
            return Err(format!(
                "{src}: this run needs {:.2} GB of working memory and the machine has {:.2} GB \
                 available; use fewer points{}",
                gb(bytes as u64),
                gb(avail),
                " (or a method without an N × N tile)"
            ));
        }
    }
    zeroed_bytes(bytes).ok_or_else(|| {
        format!(
            "{src}: could not allocate {:.2} GB of working memory",
            gb(bytes as u64)
        )
    })
}

/// `bytes` zero bytes, or None when they cannot be had. Zeroed by the allocator: a large
/// block comes as fresh pages that are zero already, so nothing is written (and no page is
/// touched) until the core uses it, rather than every page faulted in here by one thread.
fn zeroed_bytes(bytes: usize) -> Option<Vec<u8>> {
    if bytes == 0 {
        return Some(Vec::new());
    }
    let layout = std::alloc::Layout::array::<u8>(bytes).ok()?;
    // SAFETY: the layout is not zero-sized; a non-null block of `bytes` zeroed bytes from the
    // global allocator with u8's layout is what a Vec<u8> of that capacity owns.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout);
        (!p.is_null()).then(|| Vec::from_raw_parts(p, bytes, bytes))
    }
}

fn parse_learning_rate(s: &str) -> Res<f32> {
    match s {
        "auto" => Ok(0.0),
        s => match s.parse::<f32>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
            _ => Err(format!(
                "--learning-rate: expected a positive number or 'auto', got '{s}'"
            )),
        },
    }
}

fn run_icon(a: IconArgs) -> Res<()> {
    use ember_core::contrastive::{Neighbourhood, Normalisation, Similarity};
    use ember_core::icon::{IconParams, icon_embed, icon_scratch};
    let loaded = load(&a.io)?;
    let (data, src) = (&loaded.data, &loaded.src);
    let out_kind = io::OutputKind::from_path(&a.io.output)?;
    io::check_writable(&a.io.output, "the output")?;
    let params = IconParams {
        dims: a.dims,
        p: match a.p {
            PArg::Knn => Neighbourhood::Knn(a.k),
            PArg::Perplexity => Neighbourhood::Perplexity(a.perplexity),
        },
        q: match a.q {
            QArg::StudentT => Similarity::StudentT { dof: a.dof },
            QArg::Gaussian => Similarity::Gaussian { gamma: a.gamma },
            QArg::Cosine => Similarity::Cosine { tau: a.tau },
        },
        norm: if a.joint {
            Normalisation::Joint
        } else {
            Normalisation::Row
        },
        debias: a.alpha,
        early_iters: a.early_iters,
        iters: a.iters,
        exaggeration: a.exaggeration,
        learning_rate: parse_learning_rate(&a.learning_rate)?,
        seed: a.seed,
        ..IconParams::default()
    };
    params.validate().map_err(|e| e.to_string())?;
    let n = data.rows;
    let x = loaded.matrix()?;
    let mut scratch = scratch_for(icon_scratch(n, data.cols, &params).bytes(), src)?;
    let mut y = vec![0.0f32; n * params.dims];
    let mut obs = progress::Reporter::new(a.quiet, "KL");
    let t0 = std::time::Instant::now();
    let loss = icon_embed(
        x,
        &params,
        &Threads::new(a.threads),
        &mut obs,
        &mut scratch,
        &mut y,
    )
    .map_err(|e| format!("{src}: {e}"))?;
    obs.finish();
    io::write_embedding(&a.io.output, out_kind, &y, n, params.dims)?;
    loaded.plot(&y, params.dims)?;
    if !a.quiet {
        eprintln!("stages: {}", obs.timing_summary());
        eprintln!(
            "embedded {n} × {} in {:.1} s; I-Con loss {loss:.4}; wrote {}{}",
            data.cols,
            t0.elapsed().as_secs_f64(),
            a.io.output.display(),
            loaded
                .plot
                .as_ref()
                .map(|p| format!(" and {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn run_eval(a: EvalArgs) -> Res<()> {
    let data = io::read_matrix(&a.data)?;
    let emb = io::read_matrix(&a.embedding)?;
    if emb.rows != data.rows {
        return Err(format!(
            "{}: {} rows, but the data has {}",
            a.embedding.display(),
            emb.rows,
            data.rows
        ));
    }
    let labels = a.labels.as_deref().map(io::read_labels).transpose()?;
    if let Some(l) = &labels {
        l.check_count(data.rows)?;
    }
    let par = Threads::new(a.threads);
    let xd = MatRef::dense(&data.values, data.rows, data.cols).map_err(|e| e.to_string())?;
    let xe = MatRef::dense(&emb.values, emb.rows, emb.cols).map_err(|e| e.to_string())?;
    xd.check_values()
        .map_err(|e| format!("{}: {e}", a.data.display()))?;
    xe.check_values()
        .map_err(|e| format!("{}: {e}", a.embedding.display()))?;
    let n = data.rows;
    if a.k == 0 || a.k >= n {
        return Err(format!(
            "-k must be between 1 and N - 1 = {}",
            n.saturating_sub(1)
        ));
    }
    let neighbours = |m: MatRef, metric: Metric| -> Res<Vec<u32>> {
        let (mut norms, mut idx, mut dist) =
            (vec![0.0; n], vec![0u32; n * a.k], vec![0.0; n * a.k]);
        ember_core::knn::exact_knn(
            m,
            a.k,
            metric,
            ember_core::knn::Kernel::Simd,
            &par,
            &mut ember_core::Silent,
            &mut norms,
            &mut idx,
            &mut dist,
        )
        .map_err(|e| e.to_string())?;
        Ok(idx)
    };
    let high = data_neighbours(xd, a.k, a.metric.into(), &par)?;
    let low = neighbours(xe, Metric::SqEuclidean)?;
    let recall = ember_core::metrics::knn_recall(&high, &low, a.k).map_err(|e| e.to_string())?;
    println!("recall@{}: {recall:.4}", a.k);
    if let Some(l) = labels {
        let mut s = vec![0u8; ember_core::metrics::knn_accuracy_scratch(n, emb.cols, a.k).bytes()];
        let acc = ember_core::metrics::knn_accuracy(xe, &l.ids, a.k, 0.1, a.seed, &par, &mut s)
            .map_err(|e| e.to_string())?;
        println!("{}-NN accuracy: {acc:.4}", a.k);
    }
    Ok(())
}

/// The k nearest other rows of every row of wide data, through the blocked dense-product
/// search (several times faster than the pairwise one there): k + 1 found, each row's own
/// index (or, among duplicates, the last) dropped.
fn data_neighbours(x: MatRef, k: usize, metric: Metric, par: &Threads) -> Res<Vec<u32>> {
    let n = x.rows();
    let kk = k + 1;
    let mut norms = vec![0.0; n];
    ember_core::knn::row_norms(x, metric, &mut norms).map_err(|e| e.to_string())?;
    let mut scratch = vec![0.0; ember_core::knn::query_prepared_scratch_len(n)];
    let (mut idx, mut dist) = (vec![0u32; n * kk], vec![0.0; n * kk]);
    ember_core::knn::exact_knn_query_prepared(
        x,
        &norms,
        x,
        kk,
        metric,
        par,
        &mut ember_core::Silent,
        &mut scratch,
        &mut idx,
        &mut dist,
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(n * k);
    for (i, row) in idx.chunks_exact(kk).enumerate() {
        let own = row.iter().position(|&j| j as usize == i).unwrap_or(k);
        out.extend(
            row.iter()
                .enumerate()
                .filter(|&(c, _)| c != own)
                .map(|(_, &j)| j),
        );
    }
    Ok(out)
}

fn run_transform(a: TransformArgs) -> Res<()> {
    let out_kind = io::OutputKind::from_path(&a.output)?;
    io::check_writable(&a.output, "the output")?;
    if let Some(p) = &a.plot {
        io::check_png_path(p)?;
    }
    let model = io::read_model(&a.model)?;
    let data = io::read_matrix(&a.input)?;
    let labels = a.labels.as_deref().map(io::read_labels).transpose()?;
    if let Some(l) = &labels {
        l.check_count(data.rows)?;
    }
    let reference_labels = a
        .reference_labels
        .as_deref()
        .map(io::read_labels)
        .transpose()?;
    if let Some(l) = &reference_labels {
        l.check_count(model.header().n)?;
    }
    let src = a.input.display().to_string();
    let h = *model.header();
    if data.cols != h.input_dims {
        return Err(format!(
            "{src}: {} columns, but the model was fitted on data with {}",
            data.cols, h.input_dims
        ));
    }
    let x = MatRef::dense(&data.values, data.rows, data.cols).map_err(|e| format!("{src}: {e}"))?;
    x.check_values().map_err(|e| format!("{src}: {e}"))?;
    let opts = ember_core::fitted::TransformOptions {
        perplexity: a.perplexity,
        neighbours: a.neighbors,
        iters: a.iters,
        learning_rate: a.learning_rate,
        exaggeration: a.exaggeration,
    };
    let par = Threads::new(a.threads);
    let mut y = vec![0.0f32; data.rows * h.dims];
    let mut obs = progress::Reporter::new(a.quiet, "loss");
    let t0 = std::time::Instant::now();
    model
        .transform(x, &opts, &par, &mut obs, &mut y)
        .map_err(|e| format!("{src}: {e}"))?;
    obs.finish();
    io::write_embedding(&a.output, out_kind, &y, data.rows, h.dims)?;
    if let Some(p) = &a.plot {
        plot::write_scatter(
            p,
            &y,
            data.rows,
            h.dims,
            labels.as_ref().map(|l| l.ids.as_slice()),
        )?;
    }
    let secs = t0.elapsed().as_secs_f64();
    if let (Some(test), Some(train)) = (&labels, &reference_labels) {
        let k = 10.min(h.n);
        let mut s =
            vec![0u8; ember_core::metrics::knn_accuracy_against_scratch(h.n, data.rows, k).bytes()];
        let train_emb = MatRef::dense(model.embedding(), h.n, h.dims).map_err(|e| e.to_string())?;
        let test_emb = MatRef::dense(&y, data.rows, h.dims).map_err(|e| e.to_string())?;
        let acc = ember_core::metrics::knn_accuracy_against(
            train_emb, &train.ids, test_emb, &test.ids, k, &par, &mut s,
        )
        .map_err(|e| e.to_string())?;
        println!("{k}-NN accuracy of the new points among the reference points: {acc:.4}");
    }
    if !a.quiet {
        let method = match h.method {
            ember_core::model::Method::Tsne { .. } => "t-SNE",
            ember_core::model::Method::Umap { .. } => "UMAP",
        };
        eprintln!(
            "placed {} points into a {method} map of {} in {secs:.2} s ({:.0} points/s) on {} threads; wrote {}",
            data.rows,
            h.n,
            data.rows as f64 / secs.max(1e-9),
            par.count(),
            a.output.display()
        );
    }
    Ok(())
}
