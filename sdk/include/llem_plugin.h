/*
 * llem native plugin ABI, version 1.
 *
 * A native plugin is a shared library exporting one symbol:
 *
 *     const llem_plugin_vtable_v1 *llem_plugin_v1(void);
 *
 * returning a pointer to a static vtable. The vtable is append-only: its first
 * two fields (abi_version, struct_size) never move, new entries are only ever
 * added at the end, and the host checks struct_size before touching one. A
 * library built against another abi_version is refused with a message that
 * names the versions the host supports.
 *
 * Rules:
 *  - Every call returns an llem_status. On failure the plugin first calls
 *    host->set_error() with a message (plain text, or a JSON object
 *    {"code","message","key","hint"}).
 *  - Structured results (device lists, plans, prompts) are JSON text handed to
 *    host->write_output() during the call; the host copies it, so the plugin
 *    keeps ownership of its buffers and never frees host memory.
 *  - One instance is used by one thread at a time; different instances may be
 *    used from different threads at once.
 *  - The host never unloads a plugin library while it runs.
 *  - Timestamps: host->monotonic_ns() is CLOCK_MONOTONIC, the kernel's clock.
 */
#ifndef LLEM_PLUGIN_H
#define LLEM_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LLEM_ABI_VERSION 1u
#define LLEM_ENTRY_SYMBOL "llem_plugin_v1"

typedef int32_t llem_status;
#define LLEM_OK 0
#define LLEM_ERR_INVALID_CONFIG 1
#define LLEM_ERR_UNAVAILABLE 2
#define LLEM_ERR_PERMISSION_DENIED 3
#define LLEM_ERR_IO 4
#define LLEM_ERR_OTHER 5

#define LLEM_KIND_ENERGY 1u
#define LLEM_KIND_BACKEND 2u
#define LLEM_KIND_DATASET 3u
#define LLEM_KIND_SINK 4u

#define LLEM_LOG_TRACE 0
#define LLEM_LOG_DEBUG 1
#define LLEM_LOG_INFO 2
#define LLEM_LOG_WARN 3
#define LLEM_LOG_ERROR 4

/* Services the host gives each plugin instance (and describe-time calls). */
typedef struct llem_host {
    uint32_t abi_version;
    uint32_t struct_size;
    void *ctx;
    void (*log)(void *ctx, int32_t level, const char *msg, size_t len);
    uint64_t (*monotonic_ns)(void *ctx);
    void (*set_error)(void *ctx, const char *msg, size_t len);
    void (*write_output)(void *ctx, const char *data, size_t len);
} llem_host;

#define LLEM_READING_HAS_ENERGY 1u
#define LLEM_READING_HAS_POWER 2u

/* One read of one device: raw cumulative counter and/or power. */
typedef struct llem_reading {
    uint32_t device;    /* index into the device list */
    uint32_t flags;     /* LLEM_READING_HAS_* */
    uint64_t energy_uj; /* cumulative microjoules, valid with HAS_ENERGY */
    uint64_t power_mw;  /* milliwatts, valid with HAS_POWER */
} llem_reading;

typedef struct llem_plugin_vtable_v1 {
    uint32_t abi_version; /* LLEM_ABI_VERSION */
    uint32_t struct_size; /* sizeof(llem_plugin_vtable_v1) as built */
    uint32_t kind;        /* LLEM_KIND_* */
    uint32_t reserved;    /* 0 */

    /* Plugin info as JSON: {"name","kind","version","description","options":[...]}.
     * Written with host->write_output. */
    llem_status (*describe)(const llem_host *host);
    /* Create an instance from the manifest sub-table (JSON, defaults filled).
     * `host` stays valid until close(). */
    llem_status (*open)(const llem_host *host, const char *config_json, size_t config_len,
                        void **instance);
    void (*close)(void *instance);

    /* LLEM_KIND_ENERGY (NULL otherwise) */
    /* JSON array of devices: {"id","name","kind","has_energy_counter",
     * "counter_wrap_uj"?,"has_power","power_average_window_ms","estimated",
     * "parent"?,"max_power_w"?}. Optional keys may be left out; hosts ignore
     * keys they do not know, so new optional keys need no new ABI version.
     *   parent:      id of another device of this instance whose energy already
     *                includes this one (RAPL core inside its package); totals
     *                then count the energy once.
     *   max_power_w: the most power the device can plausibly draw; readings
     *                implying more are recorded as gaps, not energy. Absent:
     *                the host's default for the device kind. */
    llem_status (*energy_devices)(void *instance);
    llem_status (*energy_read)(void *instance, llem_reading *out, size_t capacity,
                               size_t *count);
    llem_status (*energy_telemetry)(void *instance); /* JSON array */

    /* LLEM_KIND_BACKEND */
    llem_status (*backend_plan)(void *instance, const char *request_json, size_t len);
    llem_status (*backend_parse_metrics)(void *instance, const char *text, size_t len);

    /* LLEM_KIND_DATASET */
    llem_status (*dataset_load)(void *instance, const char *request_json, size_t len);

    /* LLEM_KIND_SINK */
    llem_status (*sink_write_samples)(void *instance, const char *batch_json, size_t len);
    llem_status (*sink_write_result)(void *instance, const char *doc_json, size_t len);
    llem_status (*sink_finish)(void *instance);
} llem_plugin_vtable_v1;

/* The entry point every native plugin exports. */
const llem_plugin_vtable_v1 *llem_plugin_v1(void);

/*
 * Sink stream extension (optional; the twin of the WASM export
 * llem:plugin-ext/sink-stream@0.1.0).
 *
 * A sink that also exports
 *
 *     const llem_sink_stream_vtable_v1 *llem_sink_stream_v1(void);
 *
 * is told about the run when it starts and may ask for phase events and
 * request records while the run goes on. A sink without the symbol loads and
 * works as before: readings (sink_write_samples, during the run) and the
 * result (sink_write_result, at the end). The table is append-only like the
 * main vtable: the host checks abi_version (LLEM_SINK_STREAM_VERSION) and
 * struct_size before using it, and refuses the plugin if they are wrong.
 *
 * Order of calls on one instance (one thread at a time, as always):
 *   open -> begin_run -> { write_samples | write_events | write_requests }*
 *        -> write_result -> finish -> close
 * Every call passes JSON text, as sink_write_samples does; a call returns
 * an llem_status and reports errors with host->set_error. A failed call ends
 * delivery to that sink (the run records it, degraded), so a sink should
 * fail only when it cannot go on.
 *
 *   begin_run(instance, run_json, len)
 *       run_json: {"run_id","experiment","model"|null,"cycle","started_at",
 *                  "labels":[["study","..."],["config","..."]]}
 *       Write {"phase_events":bool,"requests":bool} with host->write_output:
 *       what to stream besides readings and the result (nothing written =
 *       nothing more).
 *   write_events(instance, events_json, len)
 *       events_json: [{"phase":"measured","edge":"start"|"end","t_ns":u64},...]
 *       in the order they happened; only when phase_events was asked for.
 *   write_requests(instance, requests_json, len)
 *       requests_json: [{"index","prompt_id","phase","send_ns",
 *       "first_token_ns"|null,"chunk_ns":[...],"end_ns","input_tokens"|null,
 *       "output_tokens"|null,"tokens_from_usage","success","error"|null},...]
 *       in completion order; only when requests was asked for.
 *
 * Calls come from a thread of the host's own, a few times a second at most,
 * in bounded batches (at most 10000 readings, 1000 requests per call). A call
 * that does not return makes the host give up on the sink at the end of the
 * run (recorded as failed): it never holds the measurement up, but a native
 * plugin is trusted code in the host's process, so it should not block.
 */
#define LLEM_SINK_STREAM_VERSION 1u
#define LLEM_SINK_STREAM_SYMBOL "llem_sink_stream_v1"

typedef struct llem_sink_stream_vtable_v1 {
    uint32_t abi_version; /* LLEM_SINK_STREAM_VERSION */
    uint32_t struct_size; /* sizeof(llem_sink_stream_vtable_v1) as built */
    llem_status (*begin_run)(void *instance, const char *run_json, size_t len);
    llem_status (*write_events)(void *instance, const char *events_json, size_t len);
    llem_status (*write_requests)(void *instance, const char *requests_json, size_t len);
} llem_sink_stream_vtable_v1;

/* The optional entry point of a streaming sink. */
const llem_sink_stream_vtable_v1 *llem_sink_stream_v1(void);

#ifdef __cplusplus
}
#endif
#endif /* LLEM_PLUGIN_H */
