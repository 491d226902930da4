// MathJax for pymdownx.arithmatex (generic mode): render \( \) and \[ \] spans. The script
// itself (assets/mathjax/tex-mml-chtml.js) is served from the site, with its fonts.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};

// MathJax typesets the first page when it starts. mkdocs-material's document$ emits that
// page too, and again after each instant-navigation swap (if that feature is turned on):
// typeset only the later ones, once MathJax has started.
if (typeof document$ !== "undefined") {
  let first = true;
  document$.subscribe(() => {
    if (first) {
      first = false;
      return;
    }
    MathJax.startup.promise.then(() => {
      MathJax.startup.output.clearCache();
      MathJax.typesetClear();
      MathJax.texReset();
      return MathJax.typesetPromise();
    });
  });
}
