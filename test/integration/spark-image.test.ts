/**
 * spillway/spark (hack/images/spark.ts) runs Spark: SparkPi through the image's own spark-submit and entrypoint,
 * as the spark user (185), from the image's layers unpacked into a root and entered with chroot in private mount,
 * PID, UTS and network namespaces (loopback only, a hostname and /etc/hosts as a runtime gives a pod); and from
 * the cluster's registry in a pod sandbox of the cluster's containerd, through CRI as a kubelet runs it. The
 * driver and executor pods Spark's Kubernetes backend creates run the same entrypoint on real nodes (the e2e).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { buildImages, type BuiltImageFile } from '../../hack/build-images.ts';
import { imageRef } from '../../hack/images/catalog.ts';
import { EXAMPLES_JAR, SPARK_PI_CLASS } from '../../hack/images/spark.ts';
import { defaultClusterDir, LocalCluster, waitFor } from '../support/cluster.ts';
import { crictl } from '../support/containerd.ts';

/** The image's root filesystem: its layers unpacked in order into `into`. */
function unpack(image: BuiltImageFile, into: string): string {
  const manifest = JSON.parse(
    image.layout.blobs.find((b) => b.digest === image.layout.manifestDigest)!.data.toString(),
  ) as { layers: Array<{ digest: string }> };
  mkdirSync(into, { recursive: true });
  for (const layer of manifest.layers) {
    const blob = image.layout.blobs.find((b) => b.digest === layer.digest)!;
    execFileSync('tar', ['-xzf', '-', '-C', into, '--numeric-owner'], {
      input: blob.data,
      maxBuffer: 1 << 30,
    });
  }
  return into;
}

describe('spillway/spark', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spillway-spark-'));
  let image: BuiltImageFile;
  let root: string;

  /**
   * Runs `args` through the image's entrypoint as 185:185 in /opt/spark/work-dir with the image's environment,
   * in fresh namespaces; returns stdout, stderr and the exit status.
   */
  const inImage = (args: string[], env: Record<string, string> = {}) => {
    const config = JSON.parse(
      image.layout.blobs.find((b) => b.digest === image.layout.configDigest)!.data.toString(),
    ) as { config: { Env: string[]; Entrypoint: string[]; WorkingDir: string; User: string } };
    const { Env, Entrypoint, WorkingDir, User } = config.config;
    const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
    const environment = [...Env, 'HOME=/home/spark', ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
    const script = [
      'set -e',
      'ip link set lo up',
      'hostname spark-test',
      `mount --rbind /dev ${root}/dev`,
      `mount -t proc proc ${root}/proc`,
      `cd ${root}`,
      // Through a pipe, as a runtime's stdio are pipes or FIFOs rather than Node's sockets.
      `env -i ${environment.map(quote).join(' ')} /usr/sbin/chroot --userspec=${User} ${root} ` +
        `sh -c ${quote(`cd ${WorkingDir} && exec "$@"`)} sh ${[...Entrypoint, ...args].map(quote).join(' ')} 2>&1 | cat`,
      'exit "${PIPESTATUS[0]}"',
    ].join('\n');
    return spawnSync('unshare', ['--mount', '--net', '--pid', '--uts', '--fork', 'bash', '-c', script], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
  };

  beforeAll(async () => {
    image = (await buildImages({ only: ['spark'] }))[0]!;
    root = unpack(image, join(dir, 'root'));
    for (const d of ['dev', 'proc']) mkdirSync(join(root, d), { recursive: true });
    // A runtime writes the pod's /etc/hosts: its hostname and localhost.
    writeFileSync(join(root, 'etc/hosts'), '127.0.0.1 localhost\n127.0.0.1 spark-test\n');
  }, 600_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs SparkPi in local mode through its spark-submit, as the spark user', () => {
    const run = inImage([
      'spark-submit',
      '--master',
      'local[2]',
      '--driver-memory',
      '512m',
      '--class',
      SPARK_PI_CLASS,
      `local://${EXAMPLES_JAR}`,
      '20',
    ]);
    expect(run.stdout).toMatch(/^Pi is roughly 3\.1\d*$/m);
    expect(run.stdout).toContain('Spark version 4.2.0');
    expect(run.status).toBe(0);
  });

  it("runs a driver as Spark's Kubernetes backend starts one: driver --properties-file <file> --class <main>", () => {
    // What spark-submit in cluster mode mounts at /opt/spark/conf/spark.properties, with a local master so that
    // the driver runs its tasks itself instead of asking the API server for executors.
    writeFileSync(
      join(root, 'opt/spark/work-dir/spark.properties'),
      'spark.master=local[2]\nspark.app.name=spark-pi\nspark.driver.memory=512m\nspark.submit.deployMode=cluster\n',
    );
    const run = inImage(
      [
        'driver',
        '--properties-file',
        '/opt/spark/work-dir/spark.properties',
        '--class',
        SPARK_PI_CLASS,
        `local://${EXAMPLES_JAR}`,
        '4',
      ],
      { SPARK_DRIVER_BIND_ADDRESS: '127.0.0.1' },
    );
    expect(run.stdout).toMatch(/^Pi is roughly 3\.1\d*$/m);
    expect(run.status).toBe(0);
  });

  it('has the Debian JRE 17 on PATH and runs as the spark user', () => {
    const run = inImage(['sh', '-c', 'java -version 2>&1; id']);
    expect(run.stdout).toMatch(/openjdk version "17\./);
    expect(run.stdout).toContain('uid=185(spark) gid=185(spark)');
  });

  it('starts an executor from what Spark puts in its pod: the executor backend dials SPARK_DRIVER_URL', () => {
    // No driver listens here, so the executor exits after its connection is refused, as it would without one.
    const run = inImage(['executor'], {
      SPARK_DRIVER_URL: 'spark://CoarseGrainedScheduler@127.0.0.1:7078',
      SPARK_EXECUTOR_ID: '1',
      SPARK_EXECUTOR_CORES: '1',
      SPARK_EXECUTOR_MEMORY: '512m',
      SPARK_APPLICATION_ID: 'spark-0123',
      SPARK_EXECUTOR_POD_IP: '127.0.0.1',
      SPARK_EXECUTOR_POD_NAME: 'spark-pi-exec-1',
      SPARK_RESOURCE_PROFILE_ID: '0',
      SPARK_JAVA_OPT_0: '-Dspark.driver.port=7078',
      SPARK_JAVA_OPT_1: '-Dspark.app.name=spark-pi',
    });
    expect(run.stdout).toContain('INFO KubernetesExecutorBackend: Started daemon');
    expect(run.stdout).toContain('Failed to connect to /127.0.0.1:7078');
    expect(run.status).not.toBe(0);
  });

  it('says which variable is missing when an executor is started without what Spark sets', () => {
    const run = inImage(['executor'], { SPARK_DRIVER_URL: 'spark://CoarseGrainedScheduler@driver:7078' });
    expect(run.status).toBe(64);
    expect(run.stdout).toContain(
      "entrypoint: SPARK_EXECUTOR_ID is not set; Spark's Kubernetes backend sets it on the pods it creates",
    );
  });
});

describe("spillway/spark in a pod sandbox of the local cluster's containerd", () => {
  const cluster = new LocalCluster(process.env.SPILLWAY_CLUSTER_DIR ?? defaultClusterDir);
  const cri = (...args: string[]) => crictl(cluster.dir, cluster.binDir, args).then((r) => r.stdout.trim());
  const work = mkdtempSync(join(tmpdir(), 'spillway-spark-cri-'));
  let podId = '';

  afterAll(async () => {
    if (podId) await cri('rmp', '--force', podId).catch(() => {});
    rmSync(work, { recursive: true, force: true });
  });

  it('pulls the image from the registry and runs SparkPi to completion as a kubelet would start it', async () => {
    if (process.getuid?.() !== 0) throw new Error('containerd needs root: run this test as root');
    // The global setup pushed every catalog image to the cluster's registry.
    const image = imageRef('spark', inject('registry'));
    await cri('pull', image);
    const podConfig = join(work, 'pod.json');
    writeFileSync(
      podConfig,
      JSON.stringify({
        metadata: { name: 'spark-pi', namespace: 'spillway-test', uid: randomUUID(), attempt: 0 },
        hostname: 'spark-pi',
        log_directory: work,
        linux: {},
      }),
    );
    podId = await cri('runp', podConfig);
    const ip = (
      await cri('inspectp', '-o', 'go-template', '--template', '{{.status.network.ip}}', podId)
    ).trim();
    // The kubelet mounts /etc/hosts with the pod's hostname; Spark resolves its own at start-up.
    writeFileSync(join(work, 'hosts'), `127.0.0.1 localhost\n${ip} spark-pi\n`);
    const containerConfig = join(work, 'spark.json');
    writeFileSync(
      containerConfig,
      JSON.stringify({
        metadata: { name: 'spark' },
        image: { image },
        args: [
          'spark-submit',
          '--master',
          'local[2]',
          '--class',
          SPARK_PI_CLASS,
          `local://${EXAMPLES_JAR}`,
          '10',
        ],
        log_path: 'spark.log',
        mounts: [{ container_path: '/etc/hosts', host_path: join(work, 'hosts') }],
        linux: { security_context: { seccomp: { profile_type: 0 } } },
      }),
    );
    const id = await cri('create', podId, containerConfig, podConfig);
    await cri('start', id);
    const state = () =>
      cri('inspect', '-o', 'go-template', '--template', '{{.status.state}} {{.status.exitCode}}', id);
    await waitFor('SparkPi to finish', 110_000, async () => (await state()).startsWith('CONTAINER_EXITED'));
    const log = readFileSync(join(work, 'spark.log'), 'utf8');
    expect(log).toMatch(/ stdout F Pi is roughly 3\.1\d*$/m);
    expect(await state()).toBe('CONTAINER_EXITED 0');
  }, 180_000);
});
