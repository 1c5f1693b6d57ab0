// plot.cpp: a dependency-free SVG line chart of the per-epoch test metric.
#include "apps/plot.h"

#include "apps/run_dir.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace cvae::app {

void write_training_curve(const std::filesystem::path& metrics_jsonl,
                          const std::filesystem::path& svg) {
  std::ifstream in(metrics_jsonl);
  if (!in) throw std::runtime_error(metrics_jsonl.string() + ": cannot read");
  std::vector<std::pair<double, double>> pts;
  std::string metric = "test_elbo", line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("epoch")) continue;
    if (!j.contains(metric)) metric = "test_recon_loss";
    if (j.contains(metric) && j[metric].is_number() && j["epoch"].is_number())
      pts.emplace_back(j["epoch"].get<double>(), j[metric].get<double>());
  }
  const double W = 640, H = 400, L = 70, R = 20, T = 40, Bm = 50;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (!pts.empty()) {
    x0 = 0;
    x1 = std::max(1.0, pts.back().first);
    auto [lo, hi] = std::minmax_element(pts.begin(), pts.end(),
                                        [](auto& a, auto& b) { return a.second < b.second; });
    y0 = lo->second;
    y1 = hi->second;
    double pad = std::max(1e-9, (y1 - y0) * 0.1);
    y0 -= pad;
    y1 += pad;
  }
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return T + (y1 - y) / (y1 - y0) * (H - T - Bm); };
  std::ostringstream os;
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
     << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
     << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
     << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">"
     << (metric == "test_elbo" ? "test ELBO (nats) per epoch" : "test reconstruction loss per epoch")
     << "</text>\n"
     << "<line x1=\"" << L << "\" y1=\"" << H - Bm << "\" x2=\"" << W - R << "\" y2=\"" << H - Bm
     << "\" stroke=\"black\"/>\n<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\""
     << H - Bm << "\" stroke=\"black\"/>\n";
  for (int k = 0; k <= 4; ++k) {  // y ticks
    double y = y0 + (y1 - y0) * k / 4;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", y);
    os << "<text x=\"" << L - 6 << "\" y=\"" << py(y) + 4 << "\" text-anchor=\"end\">" << buf << "</text>\n";
  }
  for (const auto& [e, v] : pts)  // x ticks at the epochs
    os << "<text x=\"" << px(e) << "\" y=\"" << H - Bm + 16 << "\" text-anchor=\"middle\">" << e << "</text>\n";
  os << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 12 << "\" text-anchor=\"middle\">epoch</text>\n";
  if (!pts.empty()) {
    os << "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"";
    for (const auto& [e, v] : pts) os << px(e) << "," << py(v) << " ";
    os << "\"/>\n";
    for (const auto& [e, v] : pts) os << "<circle cx=\"" << px(e) << "\" cy=\"" << py(v) << "\" r=\"3\" fill=\"#1f77b4\"/>\n";
  }
  os << "</svg>\n";
  write_file_atomic(svg, os.str());
}

}  // namespace cvae::app
