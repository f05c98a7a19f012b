/**
 * What the pod controller works with (its I/O, passed in as virtual-kubelet's config structs pass it) and how it
 * behaves, with the named defaults of its timings.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { SupervisedInformer } from '../shared/informer.ts';
import type { Logger } from '../shared/log.ts';
import type { SandboxProvider } from '../providers/types.ts';
import type { PodEventRecorder } from './pod-events.ts';
import type { PodClient } from './pod-writes.ts';
import type { RecordedEventLister } from './provider-events.ts';
import type { ResolverSource } from './resolve.ts';

/** Where the pod controller reads the time (tests pass a fake). */
export interface Clock {
  now(): number;
}

/** What the pod controller works with, and how it behaves; timings have named defaults. */
export interface PodControllerOptions {
  nodeName: string;
  hostIP: string;
  provider: SandboxProvider;
  /** The pods bound to this node (run.ts: a ListWatch field-selected on spec.nodeName); started by the controller. */
  pods: SupervisedInformer<V1Pod>;
  /** Writes Pod status, deletes and evicts Pods. */
  podClient: PodClient;
  events: PodEventRecorder;
  /**
   * Lists the Events recorded before a restart (provider-events.ts). A node identity may create Events but not
   * list them: the virtual node passes its bootstrap identity's client.
   */
  recordedEvents: RecordedEventLister;
  /** Where env and volume references are read from. */
  resolver: ResolverSource;
  /** Default the system clock. */
  clock?: Clock;
  /** Allocatable of the node, for downward API limits that default to it. */
  nodeAllocatable?: Record<string, string>;
  /** Create attempts before the pod is marked Failed with reason ProviderFailed. Default 5. */
  maxCreateAttempts?: number;
  /** Instances without a pod older than this are deleted. Default 30 s. */
  orphanMinAgeMs?: number;
  orphanIntervalMs?: number;
  /**
   * How often materialised volumes are re-resolved and pushed to the provider (`updateVolumes`), so that
   * projected service-account tokens are refreshed well before they expire and ConfigMap/Secret changes
   * arrive, as the kubelet's volume sync does. Default 40 minutes (tokens are requested for 1 hour).
   */
  volumeRefreshIntervalMs?: number;
  /** Parallel provider calls. Default 32. */
  workers?: number;
  /**
   * Parallel Pod status writes. Default 32: a status PATCH takes tens of milliseconds, and a burst of 1000 pods
   * needs about two each, so few writers make status propagation queue up (bench/burst.ts measured it).
   */
  statusWorkers?: number;
  logger?: Logger;
}

export type PodControllerSettings = Required<Omit<PodControllerOptions, 'logger' | 'pods' | 'events'>>;

/** The options with every default filled in. */
export function podControllerSettings(opts: PodControllerOptions): PodControllerSettings {
  return {
    maxCreateAttempts: 5,
    orphanMinAgeMs: 30_000,
    orphanIntervalMs: 30_000,
    volumeRefreshIntervalMs: 40 * 60_000,
    workers: 32,
    statusWorkers: 32,
    nodeAllocatable: {},
    clock: { now: () => Date.now() },
    ...opts,
  } as PodControllerSettings;
}
