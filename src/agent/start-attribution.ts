// What `fleetprof agent` and `fleetprof record` both do before sampling: say
// whether kernel frames will be named, start attribution, and build what
// samples with it, stopping attribution again if that build fails (its refresh
// timers and Kubernetes watch would otherwise keep the process alive).
import { Attribution, type AttributionOptions } from '../attribution/attribution.js';
import { kernelSymbolsVisible } from '../attribution/visibility.js';

export async function startWithAttribution<T>(
  options: Omit<AttributionOptions, 'onWarning'> | undefined,
  onWarning: (message: string) => void,
  build: (attribution: Attribution, kernelSymbolsHidden: boolean) => T,
): Promise<{ attribution: Attribution; built: T }> {
  const symbols = kernelSymbolsVisible();
  if (!symbols.visible) onWarning(`${symbols.reason}: kernel frames will be unnamed`);
  const attribution = await Attribution.start({ ...options, onWarning });
  try {
    return { attribution, built: build(attribution, !symbols.visible) };
  } catch (error) {
    await attribution.stop();
    throw error;
  }
}
