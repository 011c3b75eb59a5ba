// The vendored chart library (Chart.js, copied into /static/vendor/ by scripts/setup.sh from the npm registry).
// Loaded on demand; when it is missing the pages show tables and say why, and nothing is fetched from elsewhere.
const SOURCE = '/static/vendor/chart.umd.min.js';
let loading = null;

export function loadChartLibrary() {
  if (window.Chart) return Promise.resolve(window.Chart);
  loading ??= new Promise((resolve) => {
    const script = document.createElement('script');
    script.src = SOURCE;
    script.onload = () => resolve(window.Chart || null);
    script.onerror = () => resolve(null);
    document.head.append(script);
  });
  return loading;
}

export const MISSING_NOTE = 'Charts are off: the chart library is not installed (run scripts/setup.sh, which vendors it from the npm registry). The figures are in the table.';

// Draws or updates a chart on `canvas`; returns the chart (or null without the library).
export function drawChart(Chart, canvas, previous, config) {
  if (!Chart) return null;
  if (previous) {
    previous.data = config.data;
    previous.update('none');
    return previous;
  }
  return new Chart(canvas, {
    ...config,
    options: {responsive: true, maintainAspectRatio: false, animation: false, ...config.options},
  });
}
