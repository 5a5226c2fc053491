// Turns the addon's errno-coded failures into messages that tell the user
// what to do. The addon only reports what failed; the advice lives here.

export class FleetprofNativeError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FleetprofNativeError';
    this.code = code;
  }
}

interface AddonError {
  message: string;
  code?: string;
  operation?: string;
  libbpfLog?: string;
}

function isAddonError(value: unknown): value is AddonError {
  return typeof value === 'object' && value !== null && 'message' in value;
}

export function explainAddonLoadFailure(error: unknown, addonPath: string): FleetprofNativeError {
  const message = error instanceof Error ? error.message : String(error);
  if (/libbpf\.so/.test(message)) {
    return new FleetprofNativeError(
      'FP_NATIVE_NO_LIBBPF',
      `libbpf is not installed (${message}). Install it: apt-get install libbpf1 (Debian/Ubuntu), dnf install libbpf (Fedora).`,
      { cause: error },
    );
  }
  if (/Cannot find module|ENOENT/.test(message)) {
    return new FleetprofNativeError(
      'FP_NATIVE_NOT_BUILT',
      `the native addon is not built (${addonPath} missing). Run: npm run build`,
      { cause: error },
    );
  }
  return new FleetprofNativeError('FP_NATIVE_LOAD', `cannot load the native addon ${addonPath}: ${message}`, { cause: error });
}

export function explainBpfFailure(error: unknown): Error {
  if (!isAddonError(error)) return error instanceof Error ? error : new Error(String(error));
  const log = error.libbpfLog?.trim() ?? '';
  const operation = error.operation ?? '';
  const detail = log === '' ? '' : `\nlibbpf said:\n${log.split('\n').slice(-12).join('\n')}`;
  if (error.code === 'EPERM' || error.code === 'EACCES') {
    const running = process.getuid?.() === 0 ? 'running as root' : `running as uid ${process.getuid?.()}`;
    return new FleetprofNativeError(
      'FP_BPF_PERMISSION',
      `not allowed to ${operation || 'load the BPF program'} (${running}). fleetprof needs root, or CAP_BPF and CAP_PERFMON ` +
        `(and CAP_SYS_RESOURCE on kernels before 5.11): run it with sudo, or give the container those capabilities. ` +
        `If kernel.perf_event_paranoid or kernel.unprivileged_bpf_disabled is locked down, root is required.${detail}`,
      { cause: error },
    );
  }
  if (/BTF|vmlinux/i.test(log) || (error.code === 'ESRCH' && /load/.test(operation))) {
    return new FleetprofNativeError(
      'FP_BPF_NO_BTF',
      `the kernel has no usable BTF type information (/sys/kernel/btf/vmlinux), which fleetprof's CO-RE program needs. ` +
        `Use a kernel built with CONFIG_DEBUG_INFO_BTF=y (default on current Debian, Ubuntu, Fedora, RHEL).${detail}`,
      { cause: error },
    );
  }
  if (error.code === 'ENOENT' && /perf_event_open/.test(operation)) {
    return new FleetprofNativeError('FP_PERF_UNSUPPORTED', `the kernel has no cpu-clock perf event: ${error.message}`, { cause: error });
  }
  return new FleetprofNativeError(`FP_BPF_${error.code ?? 'FAILED'}`, `${error.message}${detail}`, { cause: error });
}
