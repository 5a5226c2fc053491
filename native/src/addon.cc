// fleetprof's native addon: the few things JavaScript cannot do itself —
// libbpf (open/load a BPF object, attach programs), the perf_event_open and
// bpf syscalls, and waking the event loop when the kernel writes to a ring
// buffer. It holds no profiling logic: map layouts are decoded in TypeScript
// (src/sampler/bpf-layout.ts) and errors carry errno names that TypeScript
// turns into advice (src/native/errors.ts).
#include <napi.h>
#include <uv.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

// libbpf reports verifier output and load failures through its print callback;
// keep the latest lines so an exception can carry them.
std::mutex g_log_mutex;
std::string g_libbpf_log;

int CaptureLibbpfLog(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof(line), format, args);
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_libbpf_log.append(line);
  if (g_libbpf_log.size() > 16384) g_libbpf_log.erase(0, g_libbpf_log.size() - 16384);
  return n;
}

std::string TakeLibbpfLog() {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::string out;
  out.swap(g_libbpf_log);
  return out;
}

const char* ErrnoName(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case E2BIG: return "E2BIG";
    case EEXIST: return "EEXIST";
    case EBUSY: return "EBUSY";
    case ENODEV: return "ENODEV";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOSYS: return "ENOSYS";
    case EBADF: return "EBADF";
    case EFAULT: return "EFAULT";
    case ENOSPC: return "ENOSPC";
    case EMFILE: return "EMFILE";
    default: return "EUNKNOWN";
  }
}

// Throws a JS Error with code (errno name), errno, operation and libbpf's log.
[[noreturn]] void ThrowErrno(Napi::Env env, const std::string& operation, int err) {
  if (err < 0) err = -err;
  std::string message = operation + " failed: " + strerror(err);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, ErrnoName(err)));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("operation", Napi::String::New(env, operation));
  error.Set("libbpfLog", Napi::String::New(env, TakeLibbpfLog()));
  throw error;
}

int FdArg(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Number>().Int32Value();
}

// ---------------------------------------------------------------------------
// Ring buffer: uv_poll on libbpf's epoll fd, so the JS callback runs the
// moment a new process is announced instead of on a timer.
class RingBufferPoller {
 public:
  static RingBufferPoller* Start(Napi::Env env, int map_fd, Napi::Function callback) {
    auto* poller = new RingBufferPoller(env, callback);
    poller->rb_ = ring_buffer__new(map_fd, &RingBufferPoller::OnRecord, poller, nullptr);
    if (!poller->rb_) {
      int err = errno;
      delete poller;
      ThrowErrno(env, "ring_buffer__new", err);
    }
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    uv_poll_init(loop, &poller->poll_, ring_buffer__epoll_fd(poller->rb_));
    poller->poll_.data = poller;
    uv_poll_start(&poller->poll_, UV_READABLE, &RingBufferPoller::OnReadable);
    return poller;
  }

  // Drains whatever is pending and delivers it; also used on stop so no
  // announcement is lost.
  void Consume() {
    if (!rb_) return;
    ring_buffer__consume(rb_);
    Deliver();
  }

  void Stop() {
    Consume();
    uv_poll_stop(&poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), [](uv_handle_t* handle) {
      delete static_cast<RingBufferPoller*>(handle->data);
    });
  }

 private:
  RingBufferPoller(Napi::Env env, Napi::Function callback)
      : env_(env), callback_(Napi::Persistent(callback)), context_(env, "fleetprof:ringbuf") {}
  ~RingBufferPoller() {
    if (rb_) ring_buffer__free(rb_);
  }

  static int OnRecord(void* ctx, void* data, size_t size) {
    auto* self = static_cast<RingBufferPoller*>(ctx);
    self->pending_.emplace_back(static_cast<const char*>(data), size);
    return 0;
  }

  static void OnReadable(uv_poll_t* handle, int status, int) {
    if (status < 0) return;
    static_cast<RingBufferPoller*>(handle->data)->Consume();
  }

  void Deliver() {
    if (pending_.empty()) return;
    Napi::HandleScope scope(env_);
    Napi::Array records = Napi::Array::New(env_, pending_.size());
    for (size_t i = 0; i < pending_.size(); i++) {
      records.Set(i, Napi::Buffer<char>::Copy(env_, pending_[i].data(), pending_[i].size()));
    }
    pending_.clear();
    try {
      callback_.MakeCallback(env_.Global(), {records}, context_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env_, e.Value());
    }
  }

  Napi::Env env_;
  Napi::FunctionReference callback_;
  Napi::AsyncContext context_;
  ring_buffer* rb_ = nullptr;
  uv_poll_t poll_{};
  std::vector<std::string> pending_;
};

// ---------------------------------------------------------------------------
class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "BpfObject",
                       {
                           InstanceMethod("mapInfo", &BpfObject::MapInfo),
                           InstanceMethod("attachPerfEvent", &BpfObject::AttachPerfEvent),
                           InstanceMethod("attachProgram", &BpfObject::AttachProgram),
                           InstanceMethod("programStats", &BpfObject::ProgramStats),
                           InstanceMethod("startRingBuffer", &BpfObject::StartRingBuffer),
                           InstanceMethod("consumeRingBuffers", &BpfObject::ConsumeRingBuffers),
                           InstanceMethod("detach", &BpfObject::Detach),
                           InstanceMethod("destroy", &BpfObject::Destroy),
                       });
  }

  // new BpfObject(path, { mapName: maxEntries, ... })
  BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {
    Napi::Env env = info.Env();
    std::string path = info[0].As<Napi::String>();
    TakeLibbpfLog();
    obj_ = bpf_object__open_file(path.c_str(), nullptr);
    if (!obj_) ThrowErrno(env, "bpf_object__open_file(" + path + ")", errno);
    if (info.Length() > 1 && info[1].IsObject()) {
      Napi::Object sizes = info[1].As<Napi::Object>();
      Napi::Array names = sizes.GetPropertyNames();
      for (uint32_t i = 0; i < names.Length(); i++) {
        std::string name = names.Get(i).As<Napi::String>();
        struct bpf_map* map = bpf_object__find_map_by_name(obj_, name.c_str());
        if (!map) {
          Close();
          Napi::Error::New(env, "no map named " + name + " in " + path).ThrowAsJavaScriptException();
          return;
        }
        int err = bpf_map__set_max_entries(map, sizes.Get(name).As<Napi::Number>().Uint32Value());
        if (err) {
          Close();
          ThrowErrno(env, "bpf_map__set_max_entries(" + name + ")", err);
        }
      }
    }
    int err = bpf_object__load(obj_);
    if (err) {
      Close();
      ThrowErrno(env, "bpf_object__load(" + path + ")", err);
    }
  }

  ~BpfObject() { Close(); }

 private:
  void Close() {
    for (auto* link : links_) bpf_link__destroy(link);
    links_.clear();
    if (obj_) bpf_object__close(obj_);
    obj_ = nullptr;
  }

  void RequireOpen(Napi::Env env) {
    if (!obj_) throw Napi::Error::New(env, "BPF object already destroyed");
  }

  struct bpf_program* FindProgram(Napi::Env env, const std::string& name) {
    RequireOpen(env);
    struct bpf_program* prog = bpf_object__find_program_by_name(obj_, name.c_str());
    if (!prog) throw Napi::Error::New(env, "no BPF program named " + name);
    return prog;
  }

  Napi::Value MapInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    std::string name = info[0].As<Napi::String>();
    struct bpf_map* map = bpf_object__find_map_by_name(obj_, name.c_str());
    if (!map) throw Napi::Error::New(env, "no map named " + name);
    Napi::Object out = Napi::Object::New(env);
    out.Set("fd", bpf_map__fd(map));
    out.Set("type", static_cast<double>(bpf_map__type(map)));
    out.Set("keySize", bpf_map__key_size(map));
    out.Set("valueSize", bpf_map__value_size(map));
    out.Set("maxEntries", bpf_map__max_entries(map));
    return out;
  }

  // attachPerfEvent(programName, cpu, frequencyHz): one cpu-clock event on one CPU.
  Napi::Value AttachPerfEvent(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string name = info[0].As<Napi::String>();
    int cpu = info[1].As<Napi::Number>().Int32Value();
    uint64_t frequency_hz = info[2].As<Napi::Number>().Int64Value();
    struct bpf_program* prog = FindProgram(env, name);

    struct perf_event_attr attr = {};
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.freq = 1;
    attr.sample_freq = frequency_hz;
    int perf_fd = syscall(__NR_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
    if (perf_fd < 0) ThrowErrno(env, "perf_event_open(cpu-clock, cpu " + std::to_string(cpu) + ")", errno);
    struct bpf_link* link = bpf_program__attach_perf_event(prog, perf_fd);
    if (!link) {
      int err = errno;
      close(perf_fd);
      ThrowErrno(env, "bpf_program__attach_perf_event(cpu " + std::to_string(cpu) + ")", err);
    }
    links_.push_back(link);  // the link owns perf_fd now
    return env.Undefined();
  }

  // attachProgram(programName): attach by the program's section (tp_btf etc.).
  Napi::Value AttachProgram(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string name = info[0].As<Napi::String>();
    struct bpf_link* link = bpf_program__attach(FindProgram(env, name));
    if (!link) ThrowErrno(env, "bpf_program__attach(" + name + ")", errno);
    links_.push_back(link);
    return env.Undefined();
  }

  // programStats(programName) -> { runTimeNs, runCount }, counted while bpf
  // stats are enabled (enableBpfStats()).
  Napi::Value ProgramStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string name = info[0].As<Napi::String>();
    int fd = bpf_program__fd(FindProgram(env, name));
    struct bpf_prog_info prog_info = {};
    __u32 len = sizeof(prog_info);
    if (bpf_obj_get_info_by_fd(fd, &prog_info, &len)) ThrowErrno(env, "bpf_obj_get_info_by_fd", errno);
    Napi::Object out = Napi::Object::New(env);
    out.Set("runTimeNs", static_cast<double>(prog_info.run_time_ns));
    out.Set("runCount", static_cast<double>(prog_info.run_cnt));
    return out;
  }

  Napi::Value StartRingBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env);
    std::string name = info[0].As<Napi::String>();
    struct bpf_map* map = bpf_object__find_map_by_name(obj_, name.c_str());
    if (!map) throw Napi::Error::New(env, "no map named " + name);
    pollers_.push_back(RingBufferPoller::Start(env, bpf_map__fd(map), info[1].As<Napi::Function>()));
    return env.Undefined();
  }

  Napi::Value ConsumeRingBuffers(const Napi::CallbackInfo& info) {
    for (auto* poller : pollers_) poller->Consume();
    return info.Env().Undefined();
  }

  // Detaches every program (nothing new is written), then delivers what the
  // ring buffers still hold. Maps stay readable until destroy().
  Napi::Value Detach(const Napi::CallbackInfo& info) {
    for (auto* link : links_) bpf_link__destroy(link);
    links_.clear();
    for (auto* poller : pollers_) poller->Stop();
    pollers_.clear();
    return info.Env().Undefined();
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    Detach(info);
    Close();
    return info.Env().Undefined();
  }

  struct bpf_object* obj_ = nullptr;
  std::vector<struct bpf_link*> links_;
  std::vector<RingBufferPoller*> pollers_;
};

// ---------------------------------------------------------------------------
// Map access by fd. Keys and values are raw bytes; TypeScript decodes them.

// mapLookup(fd, key, valueSize) -> Buffer | null
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  auto key = info[1].As<Napi::Buffer<uint8_t>>();
  uint32_t value_size = info[2].As<Napi::Number>().Uint32Value();
  auto value = Napi::Buffer<uint8_t>::New(env, value_size);
  if (bpf_map_lookup_elem(fd, key.Data(), value.Data())) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, "bpf_map_lookup_elem", errno);
  }
  return value;
}

// mapUpdate(fd, key, value)
Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto key = info[1].As<Napi::Buffer<uint8_t>>();
  auto value = info[2].As<Napi::Buffer<uint8_t>>();
  if (bpf_map_update_elem(FdArg(info, 0), key.Data(), value.Data(), BPF_ANY))
    ThrowErrno(env, "bpf_map_update_elem", errno);
  return env.Undefined();
}

// mapDelete(fd, key) -> whether the key was there
Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto key = info[1].As<Napi::Buffer<uint8_t>>();
  if (bpf_map_delete_elem(FdArg(info, 0), key.Data())) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "bpf_map_delete_elem", errno);
  }
  return Napi::Boolean::New(env, true);
}

// mapUpdateBatch(fd, keys, values, count): count entries in one syscall (an
// unwind table has hundreds of thousands of rows).
Napi::Value MapUpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto keys = info[1].As<Napi::Buffer<uint8_t>>();
  auto values = info[2].As<Napi::Buffer<uint8_t>>();
  __u32 count = info[3].As<Napi::Number>().Uint32Value();
  if (count == 0) return env.Undefined();
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = 0, .flags = 0);
  __u32 done = count;
  if (bpf_map_update_batch(FdArg(info, 0), keys.Data(), values.Data(), &done, &opts))
    ThrowErrno(env, "bpf_map_update_batch", errno);
  return env.Undefined();
}

// mapWrite(fd, byteOffset, data): copies data into the values of an array
// map created with BPF_F_MMAPABLE (each value takes round_up(value_size, 8)
// bytes), through a mapping of just the pages concerned, unmapped at once:
// a whole unwind table in one copy instead of one kernel update per row.
// (Mapping the whole map for good would put all of its memory, the row
// budget, in this process's RSS.)
Napi::Value MapWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  uint64_t offset = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
  auto data = info[2].As<Napi::Buffer<uint8_t>>();
  if (data.Length() == 0) return env.Undefined();
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t start = offset & ~(page - 1);
  size_t length = static_cast<size_t>((offset + data.Length() - start + page - 1) & ~(page - 1));
  void* memory = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(start));
  if (memory == MAP_FAILED) ThrowErrno(env, "mmap of a BPF map", errno);
  memcpy(static_cast<uint8_t*>(memory) + (offset - start), data.Data(), data.Length());
  munmap(memory, length);
  return env.Undefined();
}

// mapDrain(fd, keySize, valueSize) -> { keys, values, count }: reads every
// entry and deletes it. Called only on the generation the program is not
// writing to, so nothing is lost between the read and the delete.
Napi::Value MapDrain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  uint32_t key_size = info[1].As<Napi::Number>().Uint32Value();
  uint32_t value_size = info[2].As<Napi::Number>().Uint32Value();
  std::vector<uint8_t> keys, values;
  size_t count = 0;
  bool drained = false;
  // Batches first: one syscall per batch of entries (read and deleted in the
  // kernel) instead of three per entry; a drain at 999 Hz reads thousands.
  // Any error but "no more entries" (e.g. an old kernel without batch
  // operations) leaves the rest to the entry-by-entry loop below.
  {
    const uint32_t batch = 4096;
    std::vector<uint8_t> batch_keys(size_t(batch) * key_size), batch_values(size_t(batch) * value_size);
    // The batch position is the hash table's bucket index (4 bytes); 8 bytes leaves room.
    uint64_t in_token = 0, out_token = 0;
    bool first_batch = true;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    for (;;) {
      uint32_t n = batch;
      int err = bpf_map_lookup_and_delete_batch(fd, first_batch ? nullptr : &in_token, &out_token, batch_keys.data(), batch_values.data(), &n, &opts);
      int saved = err ? errno : 0;
      if (err == 0 || saved == ENOENT) {
        keys.insert(keys.end(), batch_keys.begin(), batch_keys.begin() + size_t(n) * key_size);
        values.insert(values.end(), batch_values.begin(), batch_values.begin() + size_t(n) * value_size);
        count += n;
      }
      if (err) {
        drained = saved == ENOENT;  // anything else: the loop below takes what is left
        break;
      }
      first_batch = false;
      in_token = out_token;
    }
  }
  size_t batched = count;
  std::vector<uint8_t> key(key_size), next(key_size), value(value_size);
  bool first = true;
  while (!drained) {
    int err = bpf_map_get_next_key(fd, first ? nullptr : key.data(), next.data());
    if (err) {
      if (errno == ENOENT) break;
      ThrowErrno(env, "bpf_map_get_next_key", errno);
    }
    first = false;
    key.swap(next);
    if (bpf_map_lookup_elem(fd, key.data(), value.data())) {
      if (errno == ENOENT) continue;
      ThrowErrno(env, "bpf_map_lookup_elem", errno);
    }
    keys.insert(keys.end(), key.begin(), key.end());
    values.insert(values.end(), value.begin(), value.end());
    count++;
  }
  for (size_t i = batched; i < count; i++) bpf_map_delete_elem(fd, keys.data() + i * key_size);
  Napi::Object out = Napi::Object::New(env);
  out.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), keys.size()));
  out.Set("values", Napi::Buffer<uint8_t>::Copy(env, values.data(), values.size()));
  out.Set("count", static_cast<double>(count));
  return out;
}

// enableBpfStats() -> fd; run-time statistics stay on while it is open.
Napi::Value EnableBpfStats(const Napi::CallbackInfo& info) {
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) ThrowErrno(info.Env(), "bpf_enable_stats", errno);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  close(FdArg(info, 0));
  return info.Env().Undefined();
}

Napi::Value PossibleCpuCount(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) ThrowErrno(info.Env(), "libbpf_num_possible_cpus", n);
  return Napi::Number::New(info.Env(), n);
}

Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), libbpf_version_string());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(CaptureLibbpfLog);
  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
  exports.Set("BpfObject", BpfObject::Init(env));
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapDrain", Napi::Function::New(env, MapDrain));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapUpdateBatch", Napi::Function::New(env, MapUpdateBatch));
  exports.Set("mapWrite", Napi::Function::New(env, MapWrite));
  exports.Set("enableBpfStats", Napi::Function::New(env, EnableBpfStats));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("possibleCpuCount", Napi::Function::New(env, PossibleCpuCount));
  exports.Set("libbpfVersion", Napi::Function::New(env, LibbpfVersion));
  return exports;
}

}  // namespace

NODE_API_MODULE(fleetprof_native, Init)
