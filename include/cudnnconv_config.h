/*
 * cudnnconv compile-time configuration.
 *
 * Every option has its default here, and only here.  setup.py reads the
 * environment variables of the same name and passes them as -D flags, which
 * take precedence over these defaults.  cudnnconv.build_info() reports the
 * values the extension was compiled with (see core/build.pyx).
 */
#ifndef CUDNNCONV_CONFIG_H
#define CUDNNCONV_CONFIG_H

#include <cudnn_version.h>

/* The oldest cuDNN we build against.  We never stub missing functions:
 * an older cuDNN is refused here, at compile time, with a clear message. */
#define CUDNNCONV_MIN_CUDNN_VERSION 90000
#if CUDNN_VERSION < CUDNNCONV_MIN_CUDNN_VERSION
#error "cudnnconv needs cuDNN >= 9.0 (found an older cudnn_version.h); set CUDNN_HOME to a cuDNN 9 install or install nvidia-cudnn-cu13"
#endif

/* Element count above which a tensor is split along the batch (the legacy
 * API indexes with 32-bit integers).  Tests build with a small value to
 * exercise the split paths without 2^31-element arrays. */
#ifndef CUDNNCONV_INDEX_LIMIT
#define CUDNNCONV_INDEX_LIMIT 2147483647LL
#endif

/* 1: build the legacy (v7) engine.  0: leave it out, for a cuDNN that drops
 * the legacy API; the package still imports and says so in build_info(). */
#ifndef CUDNNCONV_LEGACY_API
#define CUDNNCONV_LEGACY_API 1
#endif

/* 1: build the graph (backend API) engine. */
#ifndef CUDNNCONV_GRAPH_API
#define CUDNNCONV_GRAPH_API 1
#endif

/* 1: log every algorithm choice and every fallback to the 'cudnnconv'
 * logger, which then prints to stderr at DEBUG level. */
#ifndef CUDNNCONV_DEBUG
#define CUDNNCONV_DEBUG 0
#endif

#endif /* CUDNNCONV_CONFIG_H */
