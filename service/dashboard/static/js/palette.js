// One colour per run wherever runs are drawn together (compare, sweeps, the charts' default).
// 22 colours picked for distance from each other in CIELAB (every pair at least ~23 ΔE76 apart)
// and dark enough to read on white; the first eight are the charts' original ones, so a chart of
// few series looks as before. Past the palette the colours repeat with a dash pattern, so the
// 23rd run is told from the first by its line.
export const PALETTE = [
  "#2f6fde", "#d9622b", "#23824a", "#8e44ad", "#c62f2f", "#1d9aa8", "#b7791f", "#555e70",
  "#9acd32", "#000000", "#e6399b", "#c49bd9", "#bc8f8f", "#3fa7f5", "#ffa500", "#1b2a80",
  "#808000", "#f08080", "#00bfa5", "#6d4c41", "#ff1f5b", "#a0522d",
];

// uPlot's `dash` (canvas setLineDash): none for the first round of colours, then these in turn.
const DASHES = [[8, 4], [2, 3], [12, 3, 2, 3], [4, 4]];

// The i-th series' {color, dash}; `dash` is undefined (a solid line) within the first round.
export function styleFor(i) {
  const round = Math.floor(i / PALETTE.length);
  return {
    color: PALETTE[i % PALETTE.length],
    dash: round === 0 ? undefined : DASHES[(round - 1) % DASHES.length],
  };
}
