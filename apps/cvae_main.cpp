// cvae_main.cpp: the `cvae` program's command line (CLI11). Parses and
// validates every option (numbers: finite, in a stated range), hands them to
// one of the subcommands in commands.h, and turns errors into one line on
// stderr with the exit codes of errors.h (a usage error adds one line naming
// the subcommand's --help).
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <new>

#include "apps/commands.h"
#include "apps/memory.h"
#include "kernels/kernels.h"

namespace {

using namespace cvae;
using namespace cvae::app;

// "(0, 1]"-style range text for messages.
std::string range_text(double lo, double hi, bool lo_open) {
  auto num = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return std::string(b);
  };
  return (lo_open ? "(" : "[") + num(lo) + ", " + num(hi) + "]";
}

// An integer in [lo, hi], written as digits (no "1e3", no "nan").
CLI::Validator integer_in(long long lo, long long hi) {
  const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        size_t used = 0;
        long long v = 0;
        try {
          v = std::stoll(s, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != s.size() || v < lo || v > hi)
          return "must be an integer in " + range + ", got '" + s + "'";
        return "";
      },
      range);
}

// A finite number in [lo, hi] (or (lo, hi]).
CLI::Validator number_in(double lo, double hi, bool lo_open) {
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        size_t used = 0;
        double v = 0;
        try {
          v = std::stod(s, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != s.size() || !std::isfinite(v) || v < lo || v > hi || (lo_open && v == lo))
          return "must be a finite number in " + range_text(lo, hi, lo_open) + ", got '" + s + "'";
        return "";
      },
      range_text(lo, hi, lo_open));
}

// A seed: any unsigned 64-bit integer, as digits.
const CLI::Validator kSeed(
    [](std::string& s) -> std::string {
      bool digits = !s.empty() && s.size() <= 20 && s.find_first_not_of("0123456789") == std::string::npos;
      if (!digits || (s.size() == 20 && s > "18446744073709551615"))
        return "must be an integer in [0, 18446744073709551615], got '" + s + "'";
      return "";
    },
    "[0, 2^64-1]");

struct Parsed {
  TrainOptions train;
  EvalOptions eval;
  PictureOptions pic;
  std::string export_out, info_data, max_memory;
  std::string model = "cvae", kl = "mc", binarize = "threshold", recon = "bce", on_nonfinite = "stop";
  bool export_force = false;
};

void add_train(CLI::App& app, Parsed& p) {
  auto* t = app.add_subcommand("train", "Train a model; each epoch writes metrics, a sample grid and a checkpoint");
  RunConfig& c = p.train.config;
  c.data_dir = default_data_dir();
  t->add_option("--data", c.data_dir, "Directory with MNIST-format IDX files")->capture_default_str();
  t->add_option("--model", p.model, "cvae | vae-mlp | ae-conv | ae-mlp")
      ->check(CLI::IsMember({"cvae", "vae-mlp", "ae-conv", "ae-mlp"}))->capture_default_str();
  t->add_option("--latent-dim", c.model.latent_dim, "Latent dimensions")
      ->check(integer_in(1, range::kLatentMax))->capture_default_str();
  t->add_option("--epochs", c.epochs, "Total epochs to train (a resumed run continues up to this)")
      ->check(integer_in(1, range::kEpochsMax))->capture_default_str();
  t->add_option("--batch-size", c.batch_size, "Images per step")
      ->check(integer_in(1, range::kBatchMax))->capture_default_str();
  t->add_option("--lr", c.lr, "Adam learning rate")->check(number_in(0, range::kLrMax, true))->capture_default_str();
  t->add_option("--seed", c.seed, "Seed of every random stream of the run")->check(kSeed)->capture_default_str();
  t->add_option("--kl", p.kl, "mc (the tutorial's one-sample estimate) | analytic")
      ->check(CLI::IsMember({"mc", "analytic"}))->capture_default_str();
  t->add_option("--binarize", p.binarize, "threshold (pixel/255 >= 0.5) | dynamic (Bernoulli per epoch) | none")
      ->check(CLI::IsMember({"threshold", "dynamic", "none"}))->capture_default_str();
  t->add_option("--recon", p.recon, "Autoencoders' reconstruction loss: bce | l1 | l2")
      ->check(CLI::IsMember({"bce", "l1", "l2"}))->capture_default_str();
  t->add_option("--on-nonfinite", p.on_nonfinite,
                "stop: a NaN/Inf loss or gradient stops the run (exit 3, the last checkpoint kept) | "
                "skip: such steps are skipped and counted (on the GPU: one host sync per step)")
      ->check(CLI::IsMember({"stop", "skip"}))->capture_default_str();
  t->add_option("--device", p.train.device, "auto | cpu | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  t->add_option("--out", p.train.out_dir, "Run directory (default: runs/<model>)");
  t->add_option("--resume", p.train.resume,
                "Continue the run in this directory, with its stored options (--epochs: a new total)");
  t->add_flag("--no-graph", p.train.no_graph,
              "On the GPU, queue each step's kernels eagerly instead of replaying one CUDA graph of the step");
  t->add_option("--log-every", p.train.log_every, "Plain progress lines every N steps when not on a terminal")
      ->check(integer_in(0, 1000000000));
  t->add_option("--limit-train", c.limit_train, "Use only the first N training images (quick runs)")
      ->check(integer_in(0, range::kImagesMax));
  t->add_option("--limit-test", c.limit_test, "Evaluate on the first N test images (quick runs)")
      ->check(integer_in(0, range::kImagesMax));
  t->add_option("--max-memory", p.max_memory, "Refuse a run estimated to need more (e.g. 4G; default: what is available)")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            try {
              parse_bytes(s);
              return "";
            } catch (const std::invalid_argument& e) {
              return e.what();
            }
          },
          "SIZE"));
}

void add_eval(CLI::App& app, Parsed& p) {
  auto* e = app.add_subcommand("eval", "Test-set ELBO (Monte Carlo and analytic KL) and IWAE bound, in nats");
  e->add_option("--checkpoint", p.eval.checkpoint, "Checkpoint file or run directory")->required();
  e->add_option("--data", p.eval.data_dir, "IDX directory (default: the run's)");
  e->add_option("--k", p.eval.k_iwae, "Importance samples for the IWAE bound (0: skip)")
      ->check(integer_in(0, 100000))->capture_default_str();
  e->add_option("--k-mc", p.eval.k_mc, "Samples per image for the ELBO estimates")
      ->check(integer_in(1, 10000))->capture_default_str();
  e->add_option("--batch-size", p.eval.batch_size, "Images per chunk")
      ->check(integer_in(1, 100000))->capture_default_str();
  e->add_option("--seed", p.eval.seed, "Seed of the evaluation noise")->check(kSeed)->capture_default_str();
  e->add_option("--limit", p.eval.limit, "Evaluate the first N test images only")->check(integer_in(0, range::kImagesMax));
  e->add_flag("--json", p.eval.json, "One JSON object instead of name/value lines");
  e->add_option("--device", p.eval.device, "cpu | cuda | auto")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
}

void add_pictures(CLI::App& app, Parsed& p) {
  auto common = [&](CLI::App* s, const char* default_out) {
    p.pic.out = default_out;
    s->add_option("--checkpoint", p.pic.checkpoint, "Checkpoint file or run directory")->required();
    s->add_option("--out", p.pic.out, "PNG file to write")->capture_default_str();
    s->add_option("--seed", p.pic.seed, "Seed")->check(kSeed)->capture_default_str();
    s->add_flag("--force", p.pic.force, "Replace --out if it exists (a checkpoint never is)");
  };
  auto* s = app.add_subcommand("sample", "Decode z ~ N(0, I) into a grid of images");
  common(s, "samples.png");
  s->add_option("--n", p.pic.n, "Number of samples (default 16)")->check(integer_in(1, 10000));
  auto* r = app.add_subcommand("reconstruct", "Test images beside their reconstructions");
  common(r, "reconstructions.png");
  r->add_option("--data", p.pic.data_dir, "IDX directory (default: the run's)");
  r->add_option("--n", p.pic.n, "Number of test images (default 8)")->check(integer_in(1, 1000));
  r->add_option("--from", p.pic.from, "First test image index")->check(integer_in(0, range::kImagesMax));
  auto* i = app.add_subcommand("interpolate", "Decode a straight path in latent space between two test images");
  common(i, "interpolation.png");
  i->add_option("--data", p.pic.data_dir, "IDX directory (default: the run's)");
  i->add_option("--from", p.pic.from, "Test image index at the start")
      ->check(integer_in(0, range::kImagesMax))->capture_default_str();
  i->add_option("--to", p.pic.to, "Test image index at the end")
      ->check(integer_in(0, range::kImagesMax))->capture_default_str();
  i->add_option("--steps", p.pic.n, "Images along the path (default 10)")->check(integer_in(2, 1000));
  auto* m = app.add_subcommand("manifold", "Latent 2 only: decode an n x n grid of normal quantiles");
  common(m, "manifold.png");
  m->add_option("--n", p.pic.n, "Grid side (default 20)")->check(integer_in(1, 200));
}

// How to name this program in a command the user can run again.
std::string program_name(const char* argv0) {
  std::string s = argv0 ? argv0 : "cvae";
  if (s.find('/') == std::string::npos) return s;  // found on PATH
  return std::filesystem::absolute(s).lexically_normal().string();
}

int dispatch(CLI::App& app, Parsed& p) {
  if (app.got_subcommand("train")) {
    CLI::App* t = app.get_subcommand("train");
    TrainOptions& o = p.train;
    for (const CLI::Option* opt : t->get_options())
      if (opt->count() > 0) o.given.insert(opt->get_name().substr(2));  // "--lr" -> "lr"
    o.config.model.kind = p.model;
    o.config.kl = parse_kl(p.kl);
    o.config.binarize = parse_binarize(p.binarize);
    o.config.model.recon = parse_recon(p.recon);
    o.config.on_nonfinite = parse_nonfinite_policy(p.on_nonfinite);
    if (!p.max_memory.empty()) o.max_memory = parse_bytes(p.max_memory);
    return run_train(o);
  }
  if (app.got_subcommand("eval")) return run_eval(p.eval);
  if (app.got_subcommand("sample")) return run_sample(p.pic);
  if (app.got_subcommand("reconstruct")) return run_reconstruct(p.pic);
  if (app.got_subcommand("interpolate")) return run_interpolate(p.pic);
  if (app.got_subcommand("manifold")) return run_manifold(p.pic);
  if (app.got_subcommand("export")) return run_export(p.eval.checkpoint, p.export_out, p.export_force);
  return run_info(p.info_data);
}

// "see cvae train --help" for the subcommand being parsed, else the program's.
void print_help_hint(CLI::App& app) {
  std::vector<CLI::App*> subs = app.get_subcommands();
  std::fprintf(stderr, "see cvae%s%s --help\n", subs.empty() ? "" : " ", subs.empty() ? "" : subs.front()->get_name().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  cvae::kernels::cpu::use_short_openmp_spin(argv);
  CLI::App app{"cvae: train and use the convolutional VAE of TensorFlow's tutorial (and simpler autoencoders)"};
  app.require_subcommand(1);
  Parsed p;
  p.train.program = program_name(argc > 0 ? argv[0] : nullptr);
  add_train(app, p);
  add_eval(app, p);
  add_pictures(app, p);
  auto* x = app.add_subcommand("export", "Write the model weights as safetensors with PyTorch names and layouts");
  x->add_option("--checkpoint", p.eval.checkpoint, "Checkpoint file or run directory")->required();
  x->add_option("--out", p.export_out, "safetensors file to write")->required();
  x->add_flag("--force", p.export_force, "Replace --out if it exists (a checkpoint never is)");
  auto* info = app.add_subcommand("info", "Build, devices and datasets found");
  info->add_option("--data", p.info_data, "Also check this IDX directory");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (argc > 1 && argv[1][0] != '-' && app.get_subcommands().empty())
      std::fprintf(stderr, "cvae: unknown command '%s'\n", argv[1]);
    else
      std::fprintf(stderr, "cvae: %s\n", e.what());
    print_help_hint(app);
    return kExitRefused;
  }
  try {
    return dispatch(app, p);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "cvae: %s\n", e.what());
    print_help_hint(app);
    return kExitRefused;
  } catch (const NonFiniteError& e) {
    std::fprintf(stderr, "cvae: %s\n", e.what());
    return kExitNonFinite;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "cvae: out of memory (try a smaller --batch-size)\n");
    return kExitRefused;
  } catch (const std::runtime_error& e) {
    // Refused, FormatError, DataNotFound, WriteError: the input or the state must change.
    if (dynamic_cast<const Refused*>(&e) || dynamic_cast<const FormatError*>(&e) ||
        dynamic_cast<const DataNotFound*>(&e) || dynamic_cast<const WriteError*>(&e)) {
      std::fprintf(stderr, "cvae: %s\n", e.what());
      return kExitRefused;
    }
    std::fprintf(stderr, "cvae: internal error: %s\n", e.what());
    return kExitInternal;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "cvae: %s\n", e.what());
    return kExitRefused;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cvae: internal error: %s\n", e.what());
    return kExitInternal;
  }
}
