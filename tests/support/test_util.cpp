// test_util.cpp: anchors the support library (the helpers are header-only today).
#include "test_util.h"
