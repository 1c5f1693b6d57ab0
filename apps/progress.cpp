// progress.cpp: drawing the progress bar or the plain progress lines.
#include "apps/progress.h"

#include <unistd.h>

#include <cstdio>

namespace cvae::app {

std::string format_duration(double seconds) {
  long s = seconds < 0 ? 0 : static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

ProgressBar::ProgressBar(std::string label, int64_t total, int64_t first, int64_t plain_every,
                         std::FILE* out, std::string value_name)
    : label_(std::move(label)),
      value_name_(std::move(value_name)),
      total_(total),
      first_(first),
      plain_every_(plain_every > 0 ? plain_every : 1),
      out_(out),
      tty_(::isatty(::fileno(out)) == 1),
      last_plain_(first),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void ProgressBar::update(int64_t step, int64_t images, double running_value) {
  images_ += images;
  auto now = std::chrono::steady_clock::now();
  double secs = std::chrono::duration<double>(now - start_).count();
  double rate = secs > 0 ? images_ / secs : 0;
  double steps_done = static_cast<double>(step - first_);
  double eta = steps_done > 0 ? secs / steps_done * static_cast<double>(total_ - step) : 0;
  if (tty_) {
    // redraw at most ~10 times a second, and always on the last step
    if (step != total_ && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
    last_draw_ = now;
    const int width = 30;
    int filled = total_ > 0 ? static_cast<int>(width * step / total_) : width;
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < width) bar += '>' + std::string(static_cast<size_t>(width - filled - 1), ' ');
    std::fprintf(out_, "\r%s [%s] %lld/%lld  %7.0f img/s  %s %9.4f  ETA %s ", label_.c_str(), bar.c_str(),
                 static_cast<long long>(step), static_cast<long long>(total_), rate, value_name_.c_str(),
                 running_value, format_duration(eta).c_str());
  } else {
    // a line each time a multiple of plain_every_ is passed (updates may skip steps)
    if (step / plain_every_ == last_plain_ / plain_every_ && step != total_) return;
    last_plain_ = step;
    std::fprintf(out_, "%s step %lld/%lld  %.0f img/s  %s %.4f  ETA %s\n", label_.c_str(),
                 static_cast<long long>(step), static_cast<long long>(total_), rate, value_name_.c_str(),
                 running_value, format_duration(eta).c_str());
  }
  std::fflush(out_);
}

void ProgressBar::finish() {
  if (tty_) std::fprintf(out_, "\n");
  std::fflush(out_);
}

}  // namespace cvae::app
