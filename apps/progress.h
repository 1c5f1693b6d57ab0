// progress.h: the progress display of training epochs and evaluations. On a
// terminal, one line redrawn in place (step, images/s, running value, ETA);
// otherwise plain lines at a fixed step interval, so logs stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace cvae::app {

class ProgressBar {
 public:
  // `total` steps, starting at `first` (after a resume); `value_name` labels
  // the running value ("loss", "elbo"); lines go to `out`.
  ProgressBar(std::string label, int64_t total, int64_t first, int64_t plain_every,
              std::FILE* out = stdout, std::string value_name = "loss");
  // `images` since the last update; updates may skip steps (GPU runs read the
  // loss back only every few steps).
  void update(int64_t step, int64_t images, double running_value);
  void finish();  // ends the line on a terminal

 private:
  std::string label_, value_name_;
  int64_t total_, first_, plain_every_;
  std::FILE* out_;
  bool tty_;
  int64_t last_plain_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int64_t images_ = 0;
};

std::string format_duration(double seconds);  // "1:05" or "1:02:03"

}  // namespace cvae::app
