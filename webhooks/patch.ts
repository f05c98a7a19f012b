/**
 * JSON Patches for admission responses, recorded as the webhook makes its edits instead of computed by diffing
 * (a generic array diff is quadratic: a pod with 1,000 tolerations took 10 s and 1.6 GiB to patch).
 *
 * The rule: every operation applies to the RAW request object, and every operation is an `add`. An edit never
 * rebuilds an object through a schema (zod, client-node's typed deserializer): such a copy has lost the fields
 * the schema does not know, and writing it back would delete them. `add` onto an existing member replaces only
 * that member; a missing parent is created by an `add` of its own first, because JSON Patch does not create
 * parents.
 *
 * Edits go to a copy-on-write view of the raw object: only the objects and arrays on the path of an edit are
 * copied (shallowly), so an edit costs the size of the containers it touches, never a deep copy of the pod.
 */

/**
 * One JSON Patch operation (RFC 6902). Only `add`: the webhooks add constraints and annotations and never
 * remove or replace what the user wrote, and the type keeps it that way.
 */
export interface PatchOperation {
  op: 'add';
  /** A JSON Pointer (RFC 6901) into the raw object; `-` as the last token appends to an array. */
  path: string;
  value: unknown;
}

/** `key` as one JSON Pointer reference token (RFC 6901): `~` → `~0` first, then `/` → `~1`. */
export function pointerToken(key: string | number): string {
  return String(key).replaceAll('~', '~0').replaceAll('/', '~1');
}

/** The base64 form an AdmissionResponse carries, or undefined for an empty patch (then the field is omitted). */
export function encodePatch(ops: readonly PatchOperation[]): string | undefined {
  return ops.length === 0 ? undefined : Buffer.from(JSON.stringify(ops)).toString('base64');
}

type Container = Record<string | number, unknown>;
type Element<T> = T extends readonly (infer E)[] ? E : never;

const isContainer = (v: unknown): v is Container => typeof v === 'object' && v !== null;

/** The "append to this array" key of {@link ObjectEdit.add}: a symbol, so that no object key (`-` included) means it. */
const APPEND = Symbol('append');

/**
 * An edit of one raw admission object: a copy-on-write result and the patch that makes the same edits to the
 * raw object. The raw object is never modified.
 */
export class ObjectEdit<T extends object> {
  /** The operations so far, in order. Values are live until the edit ends: do not encode them before. */
  readonly patch: PatchOperation[] = [];
  #result: T;
  /** Containers this edit copied or created: safe to change in place. */
  readonly #owned = new WeakSet<object>();
  /** Containers this edit created: they travel inside the value of an earlier operation, so edits in them need none. */
  readonly #created = new WeakSet<object>();

  /** @param raw the object exactly as the AdmissionRequest carried it (parsed JSON, never schema-parsed) */
  constructor(raw: T) {
    this.#result = raw;
  }

  /** The edited object: the raw object itself while nothing changed, else a copy sharing what did not change. */
  get result(): T {
    return this.#result;
  }

  /** A handle on the whole object. */
  root(): Draft<T> {
    return new Draft<T>(this, undefined, '', '');
  }

  /** @internal the current value at `draft` (the raw value until an edit copied it). */
  valueAt(draft: DraftPlace): unknown {
    if (!draft.parent) return this.#result;
    const parent = this.valueAt(draft.parent);
    return isContainer(parent) ? parent[draft.key] : undefined;
  }

  /** @internal writes `value` under `draft` at `key` (or appends it) and records the operation when needed. */
  add(draft: DraftPlace, key: string | number | typeof APPEND, value: unknown): void {
    const { container, inCreated } = this.#open(draft);
    if (key === APPEND) (container as unknown as unknown[]).push(value);
    else container[key] = value;
    if (isContainer(value)) {
      this.#owned.add(value);
      this.#created.add(value);
    }
    const token = key === APPEND ? '-' : pointerToken(key);
    if (!inCreated) this.patch.push({ op: 'add', path: `${draft.path}/${token}`, value });
  }

  /**
   * The container at `draft`, made writable: it and every container above it are copied once (shallowly) unless
   * this edit already owns them. `inCreated`: whether it lies inside a container this edit added, whose `add`
   * operation carries whatever goes into it, so that edits there need no operation of their own.
   */
  #open(draft: DraftPlace): { container: Container; inCreated: boolean } {
    const chain: DraftPlace[] = [];
    for (let d: DraftPlace | undefined = draft; d; d = d.parent) chain.push(d);
    let container: Container | undefined;
    let inCreated = false;
    for (let i = chain.length - 1; i >= 0; i--) {
      const place = chain[i]!;
      const found: unknown = container ? container[place.key] : this.#result;
      if (!isContainer(found)) {
        // The handlers check the shape of what they edit first (shape.ts); reaching this is a bug.
        throw new TypeError(`cannot edit ${place.path || '/'}: not an object or array`);
      }
      let value = found;
      if (this.#created.has(value)) inCreated = true;
      if (!this.#owned.has(value)) {
        value = (Array.isArray(value) ? value.slice() : { ...value }) as Container;
        this.#owned.add(value);
        if (container) container[place.key] = value;
        else this.#result = value as T;
      }
      container = value;
    }
    return { container: container!, inCreated };
  }
}

/** Where a {@link Draft} points: its parent, its key there, and its JSON Pointer. */
interface DraftPlace {
  readonly parent: DraftPlace | undefined;
  readonly key: string | number;
  readonly path: string;
}

/**
 * A handle on one object or array inside an {@link ObjectEdit}. It holds a place, not a value, so handles
 * never go stale when an edit copies a container above them.
 */
export class Draft<T> implements DraftPlace {
  readonly #edit: ObjectEdit<object>;
  readonly parent: DraftPlace | undefined;
  readonly key: string | number;
  /** The JSON Pointer of this place in the raw object (`''` for the root). */
  readonly path: string;

  /** @internal use {@link ObjectEdit.root} and the navigation methods. */
  constructor(edit: ObjectEdit<object>, parent: DraftPlace | undefined, key: string | number, path: string) {
    this.#edit = edit;
    this.parent = parent;
    this.key = key;
    this.path = path;
  }

  /** The current value here, for reading. Edit only through the methods, never through this. */
  get value(): Readonly<T> {
    return this.#edit.valueAt(this) as T;
  }

  /** The object at `key`, which is added (as `init`, default `{}`) when absent or null. */
  object<K extends keyof T & string>(key: K, init?: NonNullable<T[K]>): Draft<NonNullable<T[K]>> {
    const current = (this.value as Container)[key];
    if (current === undefined || current === null) this.#edit.add(this, key, init ?? {});
    return this.#child(key);
  }

  /** The array at `key`, which is added (empty) when absent or null. */
  array<K extends keyof T & string>(key: K): Draft<NonNullable<T[K]>> {
    const current = (this.value as Container)[key];
    if (current === undefined || current === null) this.#edit.add(this, key, []);
    return this.#child(key);
  }

  /** The element at `index` of this array (which must exist). */
  at(index: number): Draft<Element<T>> {
    return this.#child(index);
  }

  /** Appends `value` to this array. */
  push(value: Element<T>): void {
    this.#edit.add(this, APPEND, value);
  }

  /** Sets `key` of this object to `value` (an `add`, which replaces only that member if it exists). */
  set<K extends keyof T & string>(key: K, value: T[K]): void {
    this.#edit.add(this, key, value);
  }

  #child<C>(key: string | number): Draft<C> {
    return new Draft<C>(this.#edit, this, key, `${this.path}/${pointerToken(key)}`);
  }
}
