// The state and life cycle every live example shares: the backend picked (also from `?backend=`),
// the image count, status and error lines, one LiveSession per page, and re-running on a change.
import type { BackendName } from '@dynn/core';
import { withBase } from 'vitepress';
import { computed, onBeforeUnmount, onMounted, ref, shallowRef } from 'vue';
import { backendFromSearch, DEFAULT_BACKEND, errorMessage, searchWithBackend } from '../src/backend-choice';
import type { FashionSample } from '../src/fashion-sample';
import { DEFAULT_IMAGE_COUNT } from '../src/image-count';
import type { LiveSession } from '../src/live-session';

/** What an example's work gets for one run. */
export interface LiveRun {
  /** The page's session: assets, models cached per backend, the sample images. */
  session: LiveSession;
  /** The backend requested for this run. */
  backend: BackendName;
  /** How many test images to classify. */
  imageCount: number;
  /** Starts the requested backend (and shows its note); call it before touching tensors. */
  activate: () => Promise<void>;
  /** Shows what the run is doing now. */
  setStatus: (text: string) => void;
}

/**
 * The shared state of a live example component. `work` does one run and returns its result and
 * what it ran on (the images it classified, by default); it runs when the page mounts, on a
 * backend change and on `run()`.
 */
export function useLiveExample<Result, Sample = FashionSample>(
  work: (run: LiveRun) => Promise<{ result: Result; sample: Sample }>,
) {
  const backend = ref<BackendName>(DEFAULT_BACKEND);
  const imageCount = ref(DEFAULT_IMAGE_COUNT);
  const notice = ref('');
  const status = ref('');
  const error = ref('');
  const backendNote = ref('');
  const result = shallowRef<Result>();
  const sample = shallowRef<Sample>();
  const busy = computed(() => status.value !== '');
  let session: LiveSession | undefined;
  let mounted = false;

  async function run(): Promise<void> {
    const requested = backend.value;
    status.value = `Starting the ${requested} backend…`;
    error.value = '';
    result.value = undefined;
    try {
      // tfjs loads only once the page is mounted and a run starts.
      const { LiveSession, exampleAssets } = await import('../src/live-session');
      session ??= new LiveSession(exampleAssets(new URL(withBase('/'), window.location.href).href));
      const current = session;
      const outcome = await work({
        session: current,
        backend: requested,
        imageCount: imageCount.value,
        activate: async () => {
          backendNote.value = (await current.activate(requested)).note ?? '';
        },
        setStatus: (text) => {
          status.value = text;
        },
      });
      if (!mounted) return;
      sample.value = outcome.sample;
      result.value = outcome.result;
    } catch (caught) {
      error.value = errorMessage(caught);
    } finally {
      status.value = '';
    }
  }

  function onBackendChange(chosen: BackendName): void {
    window.history.replaceState(window.history.state, '', searchWithBackend(window.location.search, chosen));
    void run();
  }

  onMounted(() => {
    mounted = true;
    const request = backendFromSearch(window.location.search);
    backend.value = request.backend;
    notice.value = request.problem ?? '';
    void run();
  });

  onBeforeUnmount(() => {
    mounted = false;
    session?.dispose();
  });

  return {
    backend,
    imageCount,
    notice,
    status,
    error,
    backendNote,
    result,
    sample,
    busy,
    run,
    onBackendChange,
  };
}
