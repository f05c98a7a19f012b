/**
 * Every reason spillway writes into a pod's status, an ElasticWorkload's conditions or an Event. Several are
 * written by one part and read by another (the virtual node fails a pod with `InsufficientCapacity`; the
 * ElasticWorkload controller reads it to fall back to the next unit), so each is spelled here once. Reasons
 * are UpperCamelCase, as metav1.Condition and Event reasons must be.
 */

/**
 * `status.reason` of a pod the virtual node failed. The ElasticWorkload controller reads these on its unit pods:
 * a provider refusal or failure counts towards UnitPodsFailing, no capacity makes a spot unit fall back.
 */
export const PodReason = {
  /** A sandbox cannot run the pod (sandbox-rules.ts), or the provider refused its spec (InvalidPodSpecError). */
  UnsupportedPodSpec: 'UnsupportedPodSpec',
  /** The provider has no capacity for the pod now (InsufficientCapacityError): ECI out of stock, spot gone. */
  InsufficientCapacity: 'InsufficientCapacity',
  /** The provider failed every create attempt. */
  ProviderFailed: 'ProviderFailed',
} as const;
/** One of {@link PodReason}. */
export type PodReason = (typeof PodReason)[keyof typeof PodReason];

/** Reasons of an ElasticWorkload's conditions (types in elasticworkload.ts ConditionType). */
export const ConditionReason = {
  /** Ready False: another, older ElasticWorkload splits the same Deployment. */
  SourceClaimed: 'SourceClaimed',
  /** Ready False: the source Deployment does not exist. */
  SourceNotFound: 'SourceNotFound',
  /** Ready True: every placed replica is ready. */
  AllReplicasReady: 'AllReplicasReady',
  /** Ready False: some placed replicas are not ready yet. */
  ReplicasNotReady: 'ReplicasNotReady',
  /** Ready False: replicas run nowhere because the units that would take them have no provider capacity. */
  UnitsWithoutCapacity: 'UnitsWithoutCapacity',
  /** Bursting True. */
  ReplicasOnUnits: 'ReplicasOnUnits',
  /** Bursting False. */
  AllOnSource: 'AllOnSource',
  /** BurstBlocked True (and Ready False): the source's pod template breaks the sandbox rules. */
  UnsupportedPodSpec: 'UnsupportedPodSpec',
  /** BurstBlocked True: a unit's provider refuses its pod template by its static rules. */
  ProviderRefusesPodSpec: 'ProviderRefusesPodSpec',
  /** BurstBlocked True: a unit's pods keep failing on the virtual node. */
  UnitPodsFailing: 'UnitPodsFailing',
  /** BurstBlocked False. */
  NoUnsupportedFeatures: 'NoUnsupportedFeatures',
  /** Capped True: the units that would take replicas cannot run them. */
  UnitsCannotRun: 'UnitsCannotRun',
  /** Capped True: the source and every unit are at their max. */
  AllTargetsAtMax: 'AllTargetsAtMax',
  /** Capped True: unit pods wait for room on a virtual node. */
  NoVirtualNodeCapacity: 'NoVirtualNodeCapacity',
  /** Capped False. */
  AllPlaced: 'AllPlaced',
} as const;
/** One of {@link ConditionReason}. */
export type ConditionReason = (typeof ConditionReason)[keyof typeof ConditionReason];

/** Reasons of the Events spillway records (the kubelet's own container Events keep the kubelet's reasons). */
export const EventReason = {
  // On an ElasticWorkload.
  /** Another, older ElasticWorkload splits the same Deployment. */
  SourceClaimed: 'SourceClaimed',
  /** The source's pod template breaks the sandbox rules: no replica can burst. */
  BurstBlocked: 'BurstBlocked',
  /** The source Deployment does not exist. */
  SourceNotFound: 'SourceNotFound',
  /** A deletion's fold-back did not finish within foldBackTimeoutSeconds. */
  FoldBackTimedOut: 'FoldBackTimedOut',
  /** A spot unit has no provider capacity: its replicas overflow into the next unit. */
  SpotFallback: 'SpotFallback',
  /** The source's replicas changed. */
  ScaledSource: 'ScaledSource',
  /** A unit's replicas changed. */
  ScaledUnit: 'ScaledUnit',
  /** A unit Deployment could not be written. */
  UnitApplyFailed: 'UnitApplyFailed',
  /** A unit Deployment was deleted. */
  DeletedUnit: 'DeletedUnit',
  // On a pod of a virtual node.
  /** The provider refused one create attempt. */
  ProviderCreateFailed: 'ProviderCreateFailed',
  /** A volume could not be materialised or refreshed. */
  FailedMount: 'FailedMount',
  /** The pod is evicted before its instance is reclaimed (spot). */
  Evicting: 'Evicting',
} as const;
/** One of {@link EventReason}. */
export type EventReason = (typeof EventReason)[keyof typeof EventReason];
