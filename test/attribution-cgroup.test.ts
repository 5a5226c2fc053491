// cgroup path shapes as they appear in /proc/PID/cgroup on real hosts: one per
// runtime, cgroup driver and hierarchy (v1, v2, hybrid), plus the shapes that
// must NOT be taken for a container (conmon, the pod's own slice, units).
import { describe, expect, it } from 'vitest';
import { identifyPath, identifyProcess, parseCgroupFile } from '../src/attribution/cgroup.js';

const ID = '4f1d2c3b5a6978e0d1c2b3a4958677e8f9a0b1c2d3e4f5061728394a5b6c7d8e';
const ID2 = 'a'.repeat(63) + 'b';
const UID = '8a4e6e0e-3d2b-4c1b-9a0e-6f5b1a2c3d4e';
const UID_ = UID.replaceAll('-', '_');

describe('cgroup v2 (unified) paths', () => {
  it('containerd, systemd driver, burstable pod', () => {
    expect(identifyProcess(`0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope\n`)).toEqual({
      unifiedPath: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`,
      containerId: ID,
      runtime: 'containerd',
      podUid: UID,
      qosClass: 'burstable',
    });
  });
  it('containerd, systemd driver, guaranteed pod (no QoS slice)', () => {
    const id = identifyPath(`/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${ID}.scope`);
    expect(id).toEqual({ containerId: ID, runtime: 'containerd', podUid: UID, qosClass: 'guaranteed' });
  });
  it('containerd, cgroupfs driver (k3s, kubeadm without systemd)', () => {
    expect(identifyPath(`/kubepods/besteffort/pod${UID}/${ID}`)).toEqual({ containerId: ID, podUid: UID, qosClass: 'besteffort' });
    expect(identifyPath(`/kubepods/pod${UID}/${ID}`)).toEqual({ containerId: ID, podUid: UID, qosClass: 'guaranteed' });
  });
  it('CRI-O, and its conmon scope is not the container', () => {
    const base = `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice`;
    expect(identifyPath(`${base}/crio-${ID}.scope`)).toEqual({ containerId: ID, runtime: 'cri-o', podUid: UID, qosClass: 'besteffort' });
    expect(identifyPath(`${base}/crio-conmon-${ID}.scope`)).toEqual({ podUid: UID, qosClass: 'besteffort' });
  });
  it('CRI-O keeps a container sub-cgroup for systemd-in-container ("container" below the scope)', () => {
    expect(identifyPath(`/kubepods.slice/kubepods-pod${UID_}.slice/crio-${ID}.scope/container`).containerId).toBe(ID);
  });
  it('kind node (kubelet.slice prefix)', () => {
    const path = `/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope`;
    expect(identifyPath(path)).toEqual({ containerId: ID, runtime: 'containerd', podUid: UID, qosClass: 'besteffort' });
  });
  it('Docker, systemd driver; Podman rootful and rootless; Podman conmon', () => {
    expect(identifyPath(`/system.slice/docker-${ID}.scope`)).toEqual({ containerId: ID, runtime: 'docker' });
    expect(identifyPath(`/machine.slice/libpod-${ID}.scope`)).toEqual({ containerId: ID, runtime: 'podman' });
    expect(identifyPath(`/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope/container`)).toEqual({ containerId: ID, runtime: 'podman' });
    expect(identifyPath(`/machine.slice/libpod-conmon-${ID}.scope`)).toEqual({ systemdUnit: `libpod-conmon-${ID}.scope` });
  });
  it('a nested container: the innermost id is the process\'s own', () => {
    expect(identifyPath(`/system.slice/docker-${ID}.scope/docker/${ID2}`).containerId).toBe(ID2);
  });
  it('systemd units and sessions outside containers', () => {
    expect(identifyProcess('0::/system.slice/nginx.service\n')).toEqual({ unifiedPath: '/system.slice/nginx.service', systemdUnit: 'nginx.service' });
    expect(identifyPath('/system.slice/system-getty.slice/getty@tty1.service')).toEqual({ systemdUnit: 'getty@tty1.service' });
    expect(identifyPath('/user.slice/user-1000.slice/session-3.scope')).toEqual({ systemdUnit: 'session-3.scope' });
    expect(identifyPath('/init.scope')).toEqual({ systemdUnit: 'init.scope' });
    expect(identifyPath('/')).toEqual({});
  });
  it('the pod sandbox slice itself has a pod but no container', () => {
    expect(identifyPath(`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice`)).toEqual({ podUid: UID, qosClass: 'burstable' });
  });
  it('paths seen from inside another cgroup namespace ("/../..")', () => {
    const text = `0::/../../kubepods-besteffort-pod${UID_}.slice/cri-containerd-${ID}.scope\n`;
    expect(identifyProcess(text)).toEqual({ unifiedPath: text.slice(3, -1), containerId: ID, runtime: 'containerd', podUid: UID, qosClass: 'besteffort' });
    expect(identifyProcess('0::/../../../system.slice/containerd.service\n')).toMatchObject({ systemdUnit: 'containerd.service' });
  });
  it('a 64-hex component outside a pod or docker/ is not taken for a container id', () => {
    expect(identifyPath(`/system.slice/${ID}`)).toEqual({});
  });
});

describe('cgroup v1 hosts', () => {
  it('Docker with the cgroupfs driver: every controller line holds /docker/<id>', () => {
    const text = [
      `12:pids:/docker/${ID}`,
      `11:cpuset:/docker/${ID}`,
      `4:cpu,cpuacct:/docker/${ID}`,
      `1:name=systemd:/docker/${ID}`,
      '',
    ].join('\n');
    expect(identifyProcess(text)).toEqual({ containerId: ID, runtime: 'docker' });
  });
  it('kubelet with the cgroupfs driver on v1', () => {
    const text = [`10:memory:/kubepods/burstable/pod${UID}/${ID}`, `1:name=systemd:/kubepods/burstable/pod${UID}/${ID}`].join('\n');
    expect(identifyProcess(text)).toEqual({ containerId: ID, podUid: UID, qosClass: 'burstable' });
  });
  it('a host process on v1 gets its unit from name=systemd', () => {
    const text = ['7:memory:/system.slice/sshd.service', '1:name=systemd:/system.slice/sshd.service'].join('\n');
    expect(identifyProcess(text)).toEqual({ systemdUnit: 'sshd.service' });
  });
});

describe('hybrid hosts (v1 controllers + unified)', () => {
  it('systemd driver: the unified line names the container', () => {
    const path = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${ID}.scope`;
    const text = [`11:memory:${path}`, `1:name=systemd:${path}`, `0::${path}`].join('\n');
    expect(identifyProcess(text)).toEqual({ unifiedPath: path, containerId: ID, runtime: 'containerd', podUid: UID, qosClass: 'burstable' });
  });
  it('cgroupfs driver: the unified line is the runtime service, the v1 lines name the container', () => {
    const text = [`11:memory:/kubepods/besteffort/pod${UID}/${ID}`, `1:name=systemd:/system.slice/containerd.service`, '0::/system.slice/containerd.service'].join('\n');
    expect(identifyProcess(text)).toEqual({ unifiedPath: '/system.slice/containerd.service', containerId: ID, podUid: UID, qosClass: 'besteffort' });
  });
  it('this machine\'s own /proc/self/cgroup parses (a memory-only v1 path, unified root)', () => {
    const text = ['9:name=systemd:/', '4:memory:/process_api/0488fcfb86018b8d68f8e017389c485a', '0::/'].join('\n');
    expect(identifyProcess(text)).toEqual({ unifiedPath: '/' });
  });
});

describe('parseCgroupFile', () => {
  it('keeps colons inside the path and skips malformed lines', () => {
    expect(parseCgroupFile('0::/a:b\ngarbage\nx:y:z\n')).toEqual([{ hierarchyId: 0, controllers: '', path: '/a:b' }]);
  });
});
