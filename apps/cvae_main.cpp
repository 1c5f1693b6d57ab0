// cvae_main.cpp: the `cvae` program's command line (CLI11). Parses, hands the
// options to one of the subcommands in commands.h, and turns errors into one
// line on stderr: exit 2 for bad input (arguments, files, data), 1 otherwise.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "apps/commands.h"

namespace {

using namespace cvae;
using namespace cvae::app;

struct Parsed {
  TrainOptions train;
  EvalOptions eval;
  PictureOptions pic;
  std::string export_out, info_data;
  std::string model = "cvae", kl = "mc", binarize = "threshold", recon = "bce";
};

void add_train(CLI::App& app, Parsed& p) {
  auto* t = app.add_subcommand("train", "Train a model; each epoch writes metrics, a sample grid and a checkpoint");
  RunConfig& c = p.train.config;
  c.data_dir = default_data_dir();
  t->add_option("--data", c.data_dir, "Directory with MNIST-format IDX files")->capture_default_str();
  t->add_option("--model", p.model, "cvae | vae-mlp | ae-conv | ae-mlp")
      ->check(CLI::IsMember({"cvae", "vae-mlp", "ae-conv", "ae-mlp"}))->capture_default_str();
  t->add_option("--latent-dim", c.model.latent_dim, "Latent dimensions")->check(CLI::Range(1, 4096))->capture_default_str();
  t->add_option("--epochs", p.train.epochs, "Total epochs to train (a resumed run continues up to this)")
      ->check(CLI::Range(1, 100000))->capture_default_str();
  t->add_option("--batch-size", c.batch_size, "Images per step")->check(CLI::Range(1, 60000))->capture_default_str();
  t->add_option("--lr", c.lr, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  t->add_option("--seed", c.seed, "Seed of every random stream of the run")->capture_default_str();
  t->add_option("--kl", p.kl, "mc (the tutorial's one-sample estimate) | analytic")
      ->check(CLI::IsMember({"mc", "analytic"}))->capture_default_str();
  t->add_option("--binarize", p.binarize, "threshold (pixel/255 >= 0.5) | dynamic (Bernoulli per epoch) | none")
      ->check(CLI::IsMember({"threshold", "dynamic", "none"}))->capture_default_str();
  t->add_option("--recon", p.recon, "Autoencoders' reconstruction loss: bce | l1 | l2")
      ->check(CLI::IsMember({"bce", "l1", "l2"}))->capture_default_str();
  t->add_option("--device", p.train.device, "auto | cpu | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  t->add_option("--out", p.train.out_dir, "Run directory (default: runs/<model>)");
  t->add_option("--resume", p.train.resume, "Continue the run in this directory or checkpoint file");
  t->add_option("--log-every", p.train.log_every, "Plain progress lines every N steps when not on a terminal");
  t->add_option("--limit-train", p.train.limit_train, "Use only the first N training images (quick runs)");
  t->add_option("--limit-test", p.train.limit_test, "Evaluate on the first N test images (quick runs)");
}

void add_eval(CLI::App& app, Parsed& p) {
  auto* e = app.add_subcommand("eval", "Test-set ELBO (Monte Carlo and analytic KL) and IWAE bound, in nats");
  e->add_option("--checkpoint", p.eval.checkpoint, "Checkpoint file or run directory")->required();
  e->add_option("--data", p.eval.data_dir, "IDX directory (default: the run's)");
  e->add_option("--k", p.eval.k_iwae, "Importance samples for the IWAE bound (0: skip)")->capture_default_str();
  e->add_option("--k-mc", p.eval.k_mc, "Samples per image for the ELBO estimates")->capture_default_str();
  e->add_option("--batch-size", p.eval.batch_size, "Images per chunk")->check(CLI::Range(1, 100000))->capture_default_str();
  e->add_option("--seed", p.eval.seed, "Seed of the evaluation noise")->capture_default_str();
  e->add_option("--limit", p.eval.limit, "Evaluate the first N test images only");
  e->add_flag("--json", p.eval.json, "One JSON object instead of name/value lines");
  e->add_option("--device", p.eval.device, "cpu | cuda | auto")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
}

void add_pictures(CLI::App& app, Parsed& p) {
  auto common = [&](CLI::App* s, const char* default_out) {
    p.pic.out = default_out;
    s->add_option("--checkpoint", p.pic.checkpoint, "Checkpoint file or run directory")->required();
    s->add_option("--out", p.pic.out, "PNG file to write")->capture_default_str();
    s->add_option("--seed", p.pic.seed, "Seed")->capture_default_str();
  };
  auto* s = app.add_subcommand("sample", "Decode z ~ N(0, I) into a grid of images");
  common(s, "samples.png");
  s->add_option("--n", p.pic.n, "Number of samples (default 16)")->check(CLI::Range(1, 10000));
  auto* r = app.add_subcommand("reconstruct", "Test images beside their reconstructions");
  common(r, "reconstructions.png");
  r->add_option("--data", p.pic.data_dir, "IDX directory (default: the run's)");
  r->add_option("--n", p.pic.n, "Number of test images (default 8)")->check(CLI::Range(1, 1000));
  r->add_option("--from", p.pic.from, "First test image index")->check(CLI::NonNegativeNumber);
  auto* i = app.add_subcommand("interpolate", "Decode a straight path in latent space between two test images");
  common(i, "interpolation.png");
  i->add_option("--data", p.pic.data_dir, "IDX directory (default: the run's)");
  i->add_option("--from", p.pic.from, "Test image index at the start")->capture_default_str();
  i->add_option("--to", p.pic.to, "Test image index at the end")->capture_default_str();
  i->add_option("--steps", p.pic.n, "Images along the path (default 10)")->check(CLI::Range(2, 1000));
  auto* m = app.add_subcommand("manifold", "Latent 2 only: decode an n x n grid of normal quantiles");
  common(m, "manifold.png");
  m->add_option("--n", p.pic.n, "Grid side (default 20)")->check(CLI::Range(1, 200));
}

int dispatch(CLI::App& app, Parsed& p) {
  if (app.got_subcommand("train")) {
    p.train.config.model.kind = p.model;
    p.train.config.kl = parse_kl(p.kl);
    p.train.config.binarize = parse_binarize(p.binarize);
    p.train.config.model.recon = parse_recon(p.recon);
    p.train.config.dataset = std::filesystem::path(p.train.config.data_dir).lexically_normal().filename().string();
    if (p.train.config.dataset.empty())
      p.train.config.dataset = std::filesystem::path(p.train.config.data_dir).lexically_normal().parent_path().filename().string();
    return run_train(p.train);
  }
  if (app.got_subcommand("eval")) return run_eval(p.eval);
  if (app.got_subcommand("sample")) return run_sample(p.pic);
  if (app.got_subcommand("reconstruct")) return run_reconstruct(p.pic);
  if (app.got_subcommand("interpolate")) return run_interpolate(p.pic);
  if (app.got_subcommand("manifold")) return run_manifold(p.pic);
  if (app.got_subcommand("export")) return run_export(p.eval.checkpoint, p.export_out);
  return run_info(p.info_data);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cvae: train and use the convolutional VAE of TensorFlow's tutorial (and simpler autoencoders)"};
  app.require_subcommand(1);
  Parsed p;
  add_train(app, p);
  add_eval(app, p);
  add_pictures(app, p);
  auto* x = app.add_subcommand("export", "Write the model weights as safetensors with PyTorch names and layouts");
  x->add_option("--checkpoint", p.eval.checkpoint, "Checkpoint file or run directory")->required();
  x->add_option("--out", p.export_out, "safetensors file to write")->required();
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
    CLI::App* sub = app.get_subcommands().empty() ? &app : app.get_subcommands().front();
    std::fprintf(stderr, "%s", sub->help().c_str());
    return 2;
  }
  try {
    return dispatch(app, p);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "cvae: %s\n", e.what());
    return 2;
  } catch (const FormatError& e) {
    std::fprintf(stderr, "cvae: %s\n", e.what());
    return 2;
  } catch (const DataNotFound& e) {
    std::fprintf(stderr, "cvae: %s\n", e.what());
    return 2;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "cvae: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cvae: error: %s\n", e.what());
    return 1;
  }
}
